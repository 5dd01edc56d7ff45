"""End to end: lab DB transaction -> `labstream cdc` -> worker -> decision -> job, one trace."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cdc_helpers import cdc_settings, cleanup, running, slot_row, wait_for
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from service_signals import rule_loaded
from streams_harness import WorkerHarness

from tracing.propagation import emit_db_trace_context, trace_id_hex

pytestmark = pytest.mark.integration
LAB_TABLES = r"public\.(tenants|experiments|instruments|runs|samples|inventory_items|" \
             r"sensor_readings|trigger_rules)"


@pytest.fixture
def names(unique_name: str) -> Iterator[str]:
    yield unique_name


def _tracer() -> trace.Tracer:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    return trace.get_tracer("test.streams.e2e")


def _delete_rows(database_url: str, name: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM public.jobs WHERE rule_id = %s", (name,))
        conn.execute("DELETE FROM public.runs WHERE id LIKE %s", (f"{name}%",))
        conn.execute("DELETE FROM public.trigger_rules WHERE id = %s", (name,))
        conn.execute("DELETE FROM public.experiments WHERE id = %s", (name,))
        conn.execute("DELETE FROM public.instruments WHERE id = %s", (name,))
        conn.execute("DELETE FROM public.tenants WHERE id = %s", (name,))


def test_db_change_reaches_a_job_in_the_same_trace(
        names: str, database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    name = names
    settings = cdc_settings(name, table_include_list=LAB_TABLES, snapshot_mode="no_data",
                            topic_partitions=4)
    harness = WorkerHarness(name, kafka_bootstrap, tmp_path, launch_jobs=True)
    tracer = _tracer()
    try:
        with running(settings, database_url, kafka_bootstrap):
            harness.start_worker()
            # changes committed before the slot exists are not captured (snapshot no_data)
            wait_for(lambda: (row := slot_row(database_url, name)) is not None and row[0], 60,
                     "the connector's slot to be active")
            with psycopg.connect(database_url) as conn:
                conn.execute("INSERT INTO public.tenants (id, name) VALUES (%s, 'E2E')", (name,))
                conn.execute("INSERT INTO public.experiments (id, tenant_id, kind, status, "
                             "submitted_by) VALUES (%s, %s, 'hplc', 'running', 'e2e')",
                             (name, name))
                conn.execute("INSERT INTO public.instruments (id, name, kind) "
                             "VALUES (%s, 'HPLC e2e', 'hplc')", (name,))
                conn.execute("INSERT INTO public.trigger_rules (id, tenant_id, event_kind, "
                             "command, timeout_s) VALUES (%s, %s, 'hplc.completed', %s, 30)",
                             (name, name, json.dumps(["true", "{payload.run_id}"])))
                conn.execute("INSERT INTO public.runs (id, experiment_id, instrument_id, status)"
                             " VALUES (%s, %s, %s, 'running')", (f"{name}-run", name, name))
            # the rule must be in the worker's reference data before the run completes
            # (rows it enriches with may come later: the enrichment waits for them)
            wait_for(lambda: rule_loaded(harness.log_text(0), name), 60,
                     "the worker to load the rule")
            with tracer.start_as_current_span("POST /runs/complete"), \
                    psycopg.connect(database_url) as conn:
                trace_id = trace_id_hex()
                with conn.cursor() as cursor:
                    emit_db_trace_context(cursor)
                conn.execute(
                    "UPDATE public.runs SET status = 'completed', finished_at = now(), "
                    "result = %s WHERE id = %s",
                    (json.dumps({"peaks": [{"rt_min": 3.1, "area": 55.0, "height": 4.0}]}),
                     f"{name}-run"))

            [routed] = harness.wait_for("hplc.completed", lambda found: any(
                r["payload"]["run_id"] == f"{name}-run" for r in found), timeout_s=90)
            assert routed["headers"]["traceparent"].decode().split("-")[1] == trace_id
            assert routed["payload"]["peaks"] == [{"rt_min": 3.1, "area": 55.0, "height": 4.0}]
            assert routed["enrichment"]["complete"] is True
            assert routed["origin"]["lsn"] is not None

            decisions = harness.wait_for("decisions", lambda found: any(
                d["rule_id"] == name for d in found), timeout_s=60)
            [fired] = [d for d in decisions if d["rule_id"] == name]
            assert fired["outcome"] == "fired" and fired["command"] == ["true", f"{name}-run"]

            deadline = time.monotonic() + 60
            row = None
            while time.monotonic() < deadline:
                with psycopg.connect(database_url) as conn:
                    row = conn.execute("SELECT status, trace_id, job_key, source_topic "
                                       "FROM public.jobs WHERE rule_id = %s", (name,)).fetchone()
                if row is not None and row[0] == "succeeded":
                    break
                time.sleep(0.5)
            assert row is not None, "no job row"
            status, job_trace_id, job_key, source_topic = row
            assert status == "succeeded"
            assert job_trace_id == trace_id  # one trace from the DB transaction to the job
            assert job_key == fired["job_key"]
            # another connector + worker capturing the same lab tables at the same time (a
            # parallel test run) derives the same job key and may have claimed it first
            assert source_topic.endswith(".public.runs")
    finally:
        harness.stop_all()
        cleanup(settings, database_url)
        _delete_rows(database_url, name)
