"""The simulator against the real lab database: tables fill, and every transaction
carries its span's traceparent as a transactional logical decoding message."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from labstream.simulator.model import LabModel, SimulationConfig
from labstream.simulator.runner import Runner
from labstream.simulator.writer import LabWriter

pytestmark = pytest.mark.integration

LABSTREAM = Path(sys.executable).with_name("labstream")


def test_simulate_command_fills_the_lab_tables(database_url: str, unique_name: str) -> None:
    token = unique_name.replace("_", "")[-12:]
    env = {
        **os.environ,
        "LABSTREAM_DATABASE_URL": database_url,
        "LABSTREAM_TRACING_EXPORTERS": "none",
    }
    done = subprocess.run(
        [
            str(LABSTREAM),
            "simulate",
            "--rate",
            "20",
            "--duration",
            "3",
            "--seed",
            "7",
            "--run-id",
            token,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["run_id"] == token
    assert 45 <= summary["front_end_actions"] <= 62  # 20/s for 3 s, on a busy machine
    assert 14 < summary["achieved_rate"] <= 20.5
    assert summary["telemetry_ticks"] >= 3
    assert summary["failed"] == {}
    assert (
        summary["traced_transactions"] == summary["front_end_actions"] + summary["telemetry_ticks"]
    )
    pattern = f"%-{token}-%"
    with psycopg.connect(database_url) as conn:
        experiments = conn.execute(
            "SELECT count(*) FROM public.experiments WHERE id LIKE %s", (pattern,)
        ).fetchone()
        samples = conn.execute(
            "SELECT count(*) FROM public.samples WHERE experiment_id LIKE %s", (pattern,)
        ).fetchone()
        runs = conn.execute(
            "SELECT count(*) FROM public.runs WHERE id LIKE %s", (pattern,)
        ).fetchone()
        seeded = conn.execute(
            "SELECT (SELECT count(*) FROM public.tenants),"
            " (SELECT count(*) FROM public.instruments),"
            " (SELECT count(*) FROM public.inventory_items),"
            " (SELECT count(*) FROM public.trigger_rules WHERE id = 'hplc-peak-summary')"
        ).fetchone()
    assert experiments == (summary["actions"]["experiment.submit"],)
    assert samples is not None and samples[0] >= experiments[0]
    assert runs == (summary["actions"].get("run.start", 0),) and runs[0] > 0
    assert seeded is not None and seeded[0] >= 4 and seeded[1] >= 11 and seeded[2] >= 10
    assert seeded[3] == 1


@pytest.fixture
def decoding_slot(database_url: str, unique_name: str) -> Iterator[tuple[psycopg.Connection, str]]:
    """A temporary test_decoding slot: gone when its session ends, even if the test dies."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_create_logical_replication_slot(%s, 'test_decoding', true)", (unique_name,)
        )
        yield conn, unique_name
        conn.execute("SELECT pg_drop_replication_slot(%s)", (unique_name,))


def test_each_transaction_carries_its_spans_traceparent(
    database_url: str, unique_name: str, decoding_slot: tuple[psycopg.Connection, str]
) -> None:
    slot_conn, slot = decoding_slot
    token = unique_name.replace("_", "")[-12:]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = LabModel(random.Random(11), SimulationConfig(run_token=token))
    with psycopg.connect(database_url, autocommit=True) as conn:
        writer = LabWriter(conn)
        writer.seed(model.tenants, model.initial_lots(datetime.now(UTC)))
        runner = Runner(
            model,
            writer,
            rate=20,
            duration_s=1.5,
            tracer=provider.get_tracer("labstream.simulator"),
        )
        summary = runner.run()
    assert summary.front_end_actions >= 20

    changes = slot_conn.execute(
        "SELECT xid::text, data FROM pg_logical_slot_get_changes(%s, NULL, NULL,"
        " 'include-xids', '1')",
        (slot,),
    ).fetchall()
    by_xid: dict[str, list[str]] = defaultdict(list)
    for xid, data in changes:
        by_xid[xid].append(data)

    trace_of_experiment = {
        span.attributes["lab.experiment_id"]: format(span.context.trace_id, "032x")
        for span in exporter.get_finished_spans()
        if span.name == "POST /experiments" and span.attributes and span.context
    }
    assert len(trace_of_experiment) >= 3
    checked = 0
    for lines in by_xid.values():
        inserted = [
            experiment_id
            for experiment_id in trace_of_experiment
            if any(
                line.startswith("table public.experiments: INSERT:")
                and f"'{experiment_id}'" in line
                for line in lines
            )
        ]
        if not inserted:
            continue
        messages = [line for line in lines if "prefix: traceparent" in line]
        assert len(messages) == 1, lines
        assert "transactional: 1" in messages[0]
        # the message comes before the row changes, inside BEGIN ... COMMIT
        assert lines.index(messages[0]) < next(
            i for i, line in enumerate(lines) if line.startswith("table public.experiments")
        )
        assert lines[0].startswith("BEGIN") and lines[-1].startswith("COMMIT")
        assert f"-{trace_of_experiment[inserted[0]]}-" in messages[0]
        checked += 1
    assert checked == len(trace_of_experiment)
