"""docs/grafana-dashboard.json plots only metrics labstream really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import connectors.source.metrics as cdc_metrics
import streams.metrics as worker_metrics
import tracing.metrics  # noqa: F401  (registers the histograms and counters)

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def exported_names() -> set[str]:
    names = {name for collector in list(REGISTRY._collector_to_names)
             for name in REGISTRY._collector_to_names[collector]}
    return names | set(cdc_metrics.DESCRIBE) | set(worker_metrics.DESCRIBE)


def test_every_dashboard_query_uses_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 15
    used = {name for query in queries for name in re.findall(r"labstream_[a-z_]+", query)}
    known = exported_names()
    missing = sorted(name for name in used if name not in known
                     and not any(name.endswith(s) and name[: -len(s)] in known
                                 for s in SUFFIXES))
    assert not missing, f"the dashboard plots metrics nobody exports: {missing}"


def test_the_four_questions_each_have_a_row() -> None:
    rows = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] == "row"]
    for question in ("reach the stream", "trigger fire", "job start", "run correctly"):
        assert any(question in title for title in rows), rows
