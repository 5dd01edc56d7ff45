"""The bundled example jobs, run by the JobRunner's local backend against real lab rows."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import Iterator

import psycopg
import pytest

from streams.jobs import JobRequest, JobRunner, JobStatus
from streams.jobs.settings import JobSettings

pytestmark = pytest.mark.integration

FAST = JobSettings(launch_backoff_s=0.2, slot_poll_s=0.1, kill_grace_s=1)
PEAKS = [
    {"rt_min": 1.2, "area": 100.0, "height": 10.0},
    {"rt_min": 4.5, "area": 850.0, "height": 80.0},
    {"rt_min": 9.9, "area": 50.0, "height": 4.0},
]


@pytest.fixture
def lab(database_url: str, unique_name: str) -> Iterator[psycopg.Connection]:
    """A tenant, an HPLC instrument, and a cleanup of everything created under unique_name."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.tenants (id, name) VALUES (%s, 'jobs test')", (unique_name,)
        )
        conn.execute(
            "INSERT INTO public.instruments (id, name, kind) VALUES (%s, 'HPLC 1', 'hplc')",
            (f"{unique_name}-hplc",),
        )
        yield conn
        conn.execute("DELETE FROM public.jobs WHERE job_key LIKE %s", (f"{unique_name}%",))
        conn.execute(
            "DELETE FROM public.runs WHERE experiment_id IN "
            "(SELECT id FROM public.experiments WHERE tenant_id = %s)",
            (unique_name,),
        )
        conn.execute("DELETE FROM public.experiments WHERE tenant_id = %s", (unique_name,))
        conn.execute("DELETE FROM public.instruments WHERE id = %s", (f"{unique_name}-hplc",))
        conn.execute("DELETE FROM public.tenants WHERE id = %s", (unique_name,))


def add_hplc_run(
    conn: psycopg.Connection, tenant: str, suffix: str, injection_ul: float, peaks: list
) -> str:
    experiment_id, run_id = f"exp-{tenant}-{suffix}", f"run-{tenant}-{suffix}"
    conn.execute(
        "INSERT INTO public.experiments (id, tenant_id, kind, status, submitted_by, protocol) "
        "VALUES (%s, %s, 'hplc', 'running', 'a.okafor', %s)",
        (experiment_id, tenant, json.dumps({"injection_ul": injection_ul})),
    )
    conn.execute(
        "INSERT INTO public.runs (id, experiment_id, instrument_id, status, started_at, "
        "finished_at, result) VALUES (%s, %s, %s, 'completed', now(), now(), %s)",
        (run_id, experiment_id, f"{tenant}-hplc", json.dumps({"peaks": peaks})),
    )
    return run_id


def example_request(
    tenant: str,
    key: str,
    command: tuple[str, ...],
    traceparent: str,
    env: dict[str, str] | None = None,
) -> JobRequest:
    return JobRequest(
        job_key=f"{tenant}/{key}",
        rule_id="hplc-peak-summary",
        tenant_id=tenant,
        experiment_id=None,
        backend="local",
        image=None,
        command=command,
        env=env or {},
        timeout_s=60,
        max_concurrency=2,
        source_topic="lab.public.runs",
        source_partition=0,
        source_offset=1,
        traceparent=traceparent,
        tracestate=None,
    )


def lines_of(conn: psycopg.Connection, job_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT line FROM public.job_log_lines WHERE job_id = %s AND stream = 'stdout' "
        "ORDER BY seq",
        (job_id,),
    ).fetchall()
    return [row[0] for row in rows]


def test_hplc_peak_summary_on_a_real_run_joins_the_trace_with_its_own_spans(
    database_url, unique_name, lab
):
    run_id = add_hplc_run(lab, unique_name, "1", 10, PEAKS)
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    command = (sys.executable, "-m", "streams.jobs.examples.hplc_peak_summary", "--run", run_id)

    async def scenario():
        # local jobs get the lab DB URL by default; the job exports its spans there too
        async with JobRunner(database_url, settings=FAST) as runner:
            ok = await runner.run(example_request(unique_name, "ok", command, traceparent), 90)
            failed = await runner.run(
                example_request(unique_name, "fail", (*command, "--fail"), traceparent), 90
            )
            return ok, failed

    ok, failed = asyncio.run(scenario())
    assert ok.status is JobStatus.SUCCEEDED, ok
    assert lines_of(lab, ok.job_id) == [
        f"run {run_id}: 3 peaks, total area 1000.0",
        "main peak at 4.5 min, area 850.0",
        "purity 85.0%",
    ]
    assert failed.status is JobStatus.FAILED and failed.exit_code == 3
    spans = lab.execute(
        "SELECT name, service_name FROM labstream.spans WHERE trace_id = %s", (trace_id,)
    ).fetchall()
    assert ("hplc peak summary", "labstream-job") in spans
    assert ("read run", "labstream-job") in spans
    # the job's structured log lines (stderr) carry the trace id handed over in TRACEPARENT
    stderr = lab.execute(
        "SELECT line FROM public.job_log_lines WHERE job_id = %s AND stream = 'stderr'",
        (ok.job_id,),
    ).fetchall()
    assert any(f"trace_id={trace_id}" in row[0] for row in stderr)
    lab.execute("DELETE FROM labstream.spans WHERE trace_id = %s", (trace_id,))


def test_hplc_peak_summary_without_database_url_fails_with_a_clear_message(
    database_url, unique_name, lab
):
    command = (sys.executable, "-m", "streams.jobs.examples.hplc_peak_summary", "--run", "x")

    async def scenario():
        no_url = FAST.model_copy(update={"database_url_backends": ""})
        async with JobRunner(database_url, settings=no_url) as runner:
            return await runner.run(
                example_request(unique_name, "nourl", command, f"00-{'1' * 32}-{'2' * 16}-01"), 60
            )

    outcome = asyncio.run(scenario())
    assert outcome.status is JobStatus.FAILED and outcome.exit_code == 1
    stderr = lab.execute(
        "SELECT line FROM public.job_log_lines WHERE job_id = %s AND stream = 'stderr'",
        (outcome.job_id,),
    ).fetchall()
    assert any("LABSTREAM_DATABASE_URL" in row[0] for row in stderr)


def test_retrain_model_fits_the_calibration_line_of_the_tenants_runs(
    database_url, unique_name, lab
):
    for index, (volume, scale) in enumerate([(5, 1.0), (10, 2.0), (20, 4.0)]):
        peaks = [{**peak, "area": peak["area"] * scale} for peak in PEAKS]
        add_hplc_run(lab, unique_name, f"cal{index}", volume, peaks)
    command = (sys.executable, "-m", "streams.jobs.examples.retrain_model", "--tenant", unique_name)

    async def scenario():
        async with JobRunner(database_url, settings=FAST, job_database_url=database_url) as runner:
            return await runner.run(
                example_request(
                    unique_name,
                    "retrain",
                    command,
                    f"00-{'3' * 32}-{'4' * 16}-01",
                    env={"LABSTREAM_TRACING_ENABLED": "false"},
                ),
                90,
            )

    outcome = asyncio.run(scenario())
    assert outcome.status is JobStatus.SUCCEEDED, outcome
    assert lines_of(lab, outcome.job_id) == [
        "calibration from 3 runs: area = 200.0000 * injection_ul + 0.0000",
        "r_squared 1.0000",
    ]
