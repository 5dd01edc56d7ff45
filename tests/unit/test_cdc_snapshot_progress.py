"""Snapshot progress: every N rows and at each table's end, in the log and `cdc status`."""

from __future__ import annotations

import logging

import pytest

from connectors.pgoutput import Relation
from connectors.source.catalog import TableRef
from connectors.source.snapshot import mark_rows, track_progress
from connectors.source.status import _progress


def _rows(*sizes):
    tables = []
    for index, size in enumerate(sizes):
        ref = TableRef(index, "public", f"t{index}")
        relation = Relation(index, "public", f"t{index}", "d", ())
        tables.append((ref, relation, iter([(str(i),) for i in range(size)])))
    return mark_rows(iter(tables))


def test_progress_every_n_rows_and_per_table(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    recorded: list[dict] = []
    ticks = iter(range(1000))
    rows = list(track_progress(_rows(25, 7), lambda p: recorded.append(
        {**p, "tables": {k: dict(v) for k, v in p["tables"].items()}}), every=10,
        clock=lambda: float(next(ticks))))
    assert len(rows) == 32  # every row passes through, in order
    assert [p["rows"] for p in recorded] == [10, 20, 25, 30, 32]
    assert recorded[2]["tables_done"] == ["public.t0"]
    assert recorded[-1]["tables"] == {"public.t0": {"rows": 25, "done": True},
                                      "public.t1": {"rows": 7, "done": True}}
    assert recorded[1]["current_table"] == "public.t0"
    assert recorded[1]["tables"]["public.t0"] == {"rows": 20, "done": False}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("snapshot progress" in m for m in messages) == 3
    assert sum("snapshot table done" in m for m in messages) == 2


def test_cdc_status_shows_the_running_table() -> None:
    assert _progress({}) == ""
    assert _progress({"tables_done": ["a"], "rows": 5}) == ", 5 rows"  # the older format
    running = {"rows": 120_000, "current_table": "public.runs",
               "tables": {"public.runs": {"rows": 40_000, "done": False}}}
    assert _progress(running) == ", 120,000 rows (public.runs: 40,000)"
