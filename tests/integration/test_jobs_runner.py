"""JobRunner against the real lab DB with the local backend: lifecycle, idempotency,
failures, timeouts, launch retries, tenant limits, take-over, spans."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streams.jobs import JobRequest, JobRunner, JobStatus
from streams.jobs.settings import JobSettings

pytestmark = pytest.mark.integration

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
FAST = JobSettings(launch_attempts=3, launch_backoff_s=0.2, slot_poll_s=0.1, kill_grace_s=1)


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def make_request(name: str, command: tuple[str, ...], **overrides: object) -> JobRequest:
    fields: dict[str, Any] = {
        "job_key": f"{name}/key",
        "rule_id": f"{name}-rule",
        "tenant_id": f"{name}-tenant",
        "experiment_id": None,
        "backend": "local",
        "image": None,
        "command": command,
        "env": {},
        "timeout_s": 30,
        "max_concurrency": 4,
        "source_topic": "lab.public.runs",
        "source_partition": 0,
        "source_offset": 7,
        "traceparent": TRACEPARENT,
        "tracestate": None,
    }
    fields.update(overrides)
    return JobRequest(**fields)


@pytest.fixture
def db(database_url: str, unique_name: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
        # every job of this test has the test's unique name in its key
        conn.execute("DELETE FROM public.jobs WHERE job_key LIKE %s", (f"{unique_name}%",))


def job_row(db: psycopg.Connection, job_id: str) -> dict:
    from psycopg.rows import dict_row

    with db.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute("SELECT * FROM public.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def log_lines(db: psycopg.Connection, job_id: str) -> list[tuple]:
    return db.execute(
        "SELECT seq, stream, line, trace_id FROM public.job_log_lines WHERE job_id = %s "
        "ORDER BY seq",
        (job_id,),
    ).fetchall()


async def wait_for_status(db_url: str, job_id: str, status: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = await (
                await conn.execute("SELECT status FROM public.jobs WHERE id = %s", (job_id,))
            ).fetchone()
            if row and row[0] == status:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {status}")


def test_success_lifecycle_log_lines_and_trace_id(database_url, unique_name, db):
    code = (
        "import sys\nfor i in range(500): print(f'line {i}')\nprint('to stderr', file=sys.stderr)"
    )

    async def scenario():
        async with JobRunner(database_url, settings=FAST) as runner:
            return await runner.run(make_request(unique_name, python(code)), timeout=60)

    outcome = asyncio.run(scenario())
    assert outcome.status is JobStatus.SUCCEEDED and outcome.exit_code == 0
    row = job_row(db, outcome.job_id)
    assert row["status"] == "succeeded"
    assert row["created_at"] <= row["started_at"] <= row["finished_at"]
    assert row["trace_id"] == TRACE_ID and row["traceparent"] == TRACEPARENT
    assert row["backend_ref"].startswith("pid:")
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == (
        "lab.public.runs",
        0,
        7,
    )
    lines = log_lines(db, outcome.job_id)
    assert [seq for seq, *_ in lines] == list(range(501))
    stdout = [line for _, stream, line, _ in lines if stream == "stdout"]
    assert stdout == [f"line {i}" for i in range(500)]
    assert [line for _, stream, line, _ in lines if stream == "stderr"] == ["to stderr"]
    assert {trace_id for *_, trace_id in lines} == {TRACE_ID}
    assert outcome.log_lines == 501


def test_queued_then_started_then_succeeded_with_a_slot_wait(
    database_url, unique_name, db, tmp_path: Path
):
    gate = tmp_path / "go"
    code = (
        "import os, time\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
        "print('done')\n"
    )

    async def scenario():
        async with JobRunner(database_url, settings=FAST) as runner:
            first = await runner.submit(
                make_request(
                    unique_name, python(code), job_key=f"{unique_name}/1", max_concurrency=1
                )
            )
            await wait_for_status(database_url, first.job_id, "started")
            second = await runner.submit(
                make_request(
                    unique_name, python(code), job_key=f"{unique_name}/2", max_concurrency=1
                )
            )
            await asyncio.sleep(0.5)
            # one slot for this tenant and rule: the second job waits
            assert job_row(db, first.job_id)["status"] == "started"
            waiting = job_row(db, second.job_id)
            assert waiting["status"] == "queued" and waiting["started_at"] is None
            gate.touch()
            return await runner.wait(first.job_id, 30), await runner.wait(second.job_id, 30)

    first, second = asyncio.run(scenario())
    assert first.status is JobStatus.SUCCEEDED and second.status is JobStatus.SUCCEEDED
    assert second.started_at >= first.finished_at


def test_same_job_key_submitted_concurrently_by_two_workers_launches_once(
    database_url, unique_name, db
):
    code = "import time; print('ran once'); time.sleep(0.5)"
    request = make_request(unique_name, python(code))

    async def scenario():
        async with (
            JobRunner(database_url, settings=FAST) as worker_a,
            JobRunner(database_url, settings=FAST) as worker_b,
        ):
            results = await asyncio.gather(
                *(worker.submit(request) for worker in (worker_a, worker_b, worker_a, worker_b))
            )
            created = [result for result in results if result.created]
            assert len(created) == 1
            assert len({result.job_id for result in results}) == 1
            outcome = await worker_a.wait(created[0].job_id, 30)
            again = await worker_b.submit(request)  # succeeded: not launched again
            return outcome, again

    outcome, again = asyncio.run(scenario())
    assert outcome.status is JobStatus.SUCCEEDED
    assert (again.created, again.status, again.attempt) == (False, JobStatus.SUCCEEDED, 1)
    rows = db.execute(
        "SELECT count(*) FROM public.jobs WHERE job_key = %s", (request.job_key,)
    ).fetchone()
    assert rows == (1,)
    assert [line for _, _, line, _ in log_lines(db, outcome.job_id)] == ["ran once"]


def test_failed_job_records_exit_code_and_can_be_retried_as_a_new_attempt(
    database_url, unique_name, db
):
    failing = make_request(unique_name, python("print('bad input'); raise SystemExit(3)"))
    fixed = make_request(unique_name, python("print('good')"))

    async def scenario():
        async with JobRunner(database_url, settings=FAST) as runner:
            first = await runner.run(failing, 30)
            retry = await runner.run(fixed, 30)
            not_again = await runner.submit(fixed)
            rerun = await runner.run(
                make_request(unique_name, python("print('rerun')"), rerun_succeeded=True), 30
            )
            return first, retry, not_again, rerun

    first, retry, not_again, rerun = asyncio.run(scenario())
    assert first.status is JobStatus.FAILED and first.exit_code == 3
    assert first.error == "exited with code 3"
    assert retry.job_id == first.job_id and retry.attempt == 2
    assert retry.status is JobStatus.SUCCEEDED and retry.exit_code == 0 and retry.error is None
    assert not not_again.created
    assert rerun.attempt == 3 and rerun.status is JobStatus.SUCCEEDED
    lines = log_lines(db, first.job_id)
    # attempts append: seq keeps counting across attempts
    assert [(seq, line) for seq, _, line, _ in lines] == [
        (0, "bad input"),
        (1, "good"),
        (2, "rerun"),
    ]


def test_timeout_kills_the_job_and_marks_it_timed_out(database_url, unique_name, db):
    code = "import time\nprint('working', flush=True)\ntime.sleep(60)"

    async def scenario():
        async with JobRunner(database_url, settings=FAST) as runner:
            return await runner.run(make_request(unique_name, python(code), timeout_s=1.0), 30)

    started = time.monotonic()
    outcome = asyncio.run(scenario())
    assert time.monotonic() - started < 15
    assert outcome.status is JobStatus.TIMED_OUT
    assert outcome.exit_code is not None and outcome.exit_code < 0  # killed by a signal
    row = job_row(db, outcome.job_id)
    assert row["finished_at"] - row["started_at"] >= timedelta(seconds=1)
    assert [line for _, _, line, _ in log_lines(db, outcome.job_id)] == ["working"]


def test_missing_executable_is_retried_with_backoff_then_launch_failed(
    database_url, unique_name, db
):
    request = make_request(unique_name, ("/nonexistent/labstream-missing-tool", "--x"))

    async def scenario():
        async with JobRunner(database_url, settings=FAST) as runner:
            return await runner.run(request, 30)

    started = time.monotonic()
    outcome = asyncio.run(scenario())
    elapsed = time.monotonic() - started
    assert outcome.status is JobStatus.LAUNCH_FAILED
    assert "after 3 tries" in (outcome.error or "")
    assert "labstream-missing-tool" in (outcome.error or "")
    assert elapsed >= 0.2 + 0.4  # backoff 0.2 s, then 0.4 s
    assert outcome.exit_code is None and outcome.log_lines == 0

    # launch_failed may be retried by a later submit
    async def resubmit():
        async with JobRunner(database_url, settings=FAST) as runner:
            return await runner.submit(request)

    assert asyncio.run(resubmit()).created


def test_tenant_concurrency_cap_is_respected_and_other_tenants_are_not_blocked(
    database_url, unique_name, db
):
    code = "import time; time.sleep(0.6)"
    cap = 2

    async def scenario():
        async with JobRunner(database_url, settings=FAST) as runner:
            capped = [
                await runner.submit(
                    make_request(
                        unique_name,
                        python(code),
                        job_key=f"{unique_name}/a{i}",
                        max_concurrency=cap,
                    )
                )
                for i in range(5)
            ]
            other = await runner.submit(
                make_request(
                    unique_name,
                    python(code),
                    job_key=f"{unique_name}/b",
                    tenant_id=f"{unique_name}-other",
                    max_concurrency=cap,
                )
            )
            outcomes = [await runner.wait(item.job_id, 60) for item in capped]
            return outcomes, await runner.wait(other.job_id, 60)

    outcomes, other = asyncio.run(scenario())
    assert all(outcome.status is JobStatus.SUCCEEDED for outcome in outcomes)
    events = sorted(
        [(o.started_at, 1) for o in outcomes] + [(o.finished_at, -1) for o in outcomes],
        key=lambda event: (event[0], event[1]),  # a finish before a start at the same instant
    )
    running, peak = 0, 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == cap
    # the other tenant started while the first tenant was at its cap
    first_finish = min(o.finished_at for o in outcomes)
    assert other.started_at < first_finish


def insert_orphan(db: psycopg.Connection, name: str, request: JobRequest, *, owner: str,
                  lease_in_s: float) -> str:
    """A row left 'started' by a runner that is gone (its owner lock is not held)."""
    job_id = f"job-{name}-dead"[:40]
    db.execute(
        "INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, backend, command, timeout_s, "
        "max_concurrency, status, started_at, lease_owner, lease_expires_at) "
        "VALUES (%s, %s, %s, %s, 'local', %s, 30, %s, 'started', now(), %s, "
        "now() + make_interval(secs => %s))",
        (job_id, request.job_key, request.rule_id, request.tenant_id,
         json.dumps(list(request.command)), request.max_concurrency, owner, lease_in_s),
    )
    return job_id


def test_jobs_of_a_gone_runner_are_taken_over_and_run_again_live_ones_are_not(
    database_url, unique_name, db, tmp_path: Path
):
    # behaviour changed on purpose (issue 12): a dead worker's job is run again as its
    # next attempt, never marked failed 'worker lost'
    gate = tmp_path / "go"
    orphan = make_request(unique_name, python("print('second attempt')"),
                          job_key=f"{unique_name}/dead")
    # the lease is valid for another minute: only the free owner lock shows the owner is gone
    dead_id = insert_orphan(db, unique_name, orphan, owner="gone-host:1:dead", lease_in_s=60)
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
    settings = FAST.model_copy(update={"heartbeat_s": 0.2})

    async def scenario():
        async with JobRunner(database_url, settings=settings) as live_worker:
            live = await live_worker.submit(make_request(unique_name, python(code)))
            await wait_for_status(database_url, live.job_id, "started")
            async with JobRunner(database_url, settings=settings) as other:
                taken = await other.reconcile()
                dead_outcome = await other.wait(dead_id, 30)
            gate.touch()
            return taken, live, dead_outcome, await live_worker.wait(live.job_id, 30)

    taken, live, dead_outcome, live_outcome = asyncio.run(scenario())
    assert live.job_id not in taken
    assert (dead_outcome.status, dead_outcome.attempt) == (JobStatus.SUCCEEDED, 2)
    lines = [line for _, _, line, _ in log_lines(db, dead_id)]
    assert lines[0].startswith("labstream: attempt 1 abandoned") and lines[1] == "second attempt"
    assert (live_outcome.status, live_outcome.attempt) == (JobStatus.SUCCEEDED, 1)


def test_span_per_job_in_the_request_trace_and_the_job_gets_its_context(
    database_url, unique_name, db
):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    code = "import os; print(os.environ['TRACEPARENT'])"

    async def scenario():
        async with JobRunner(database_url, settings=FAST, tracer_provider=provider) as runner:
            ok = await runner.run(make_request(unique_name, python(code)), 30)
            bad = await runner.run(
                make_request(
                    unique_name, python("raise SystemExit(5)"), job_key=f"{unique_name}/bad"
                ),
                30,
            )
            return ok, bad

    ok, bad = asyncio.run(scenario())
    spans: dict[str, Any] = {
        str((span.attributes or {})["lab.job.id"]): span for span in exporter.get_finished_spans()
    }
    ok_span, bad_span = spans[ok.job_id], spans[bad.job_id]
    assert ok_span.name == f"job {unique_name}-rule"
    assert ok_span.kind is SpanKind.INTERNAL
    assert format(ok_span.context.trace_id, "032x") == TRACE_ID
    assert format(ok_span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert ok_span.attributes["lab.job.key"] == f"{unique_name}/key"
    assert ok_span.attributes["lab.job.backend"] == "local"
    assert ok_span.attributes["lab.job.exit_code"] == 0
    assert ok_span.status.status_code is StatusCode.OK
    assert bad_span.status.status_code is StatusCode.ERROR
    assert bad_span.attributes["lab.job.exit_code"] == 5
    # the job's TRACEPARENT is the job span: the job's own spans become its children
    (printed,) = [line for _, _, line, _ in log_lines(db, ok.job_id)]
    assert printed == f"00-{TRACE_ID}-{format(ok_span.context.span_id, '016x')}-01"


def test_closing_the_runner_with_cancel_kills_running_jobs_and_hands_them_back(
    database_url, unique_name, db
):
    # behaviour changed on purpose (issue 12): a stopping runner hands its jobs back to
    # the queue as their next attempt instead of marking them failed
    code = "import time\nprint('long job', flush=True)\ntime.sleep(60)"

    async def scenario():
        runner = JobRunner(database_url, settings=FAST)
        await runner.start()
        submitted = await runner.submit(make_request(unique_name, python(code)))
        await wait_for_status(database_url, submitted.job_id, "started")
        await wait_for_pid(db, submitted.job_id)
        await runner.aclose(cancel=True)
        return submitted

    started = time.monotonic()
    submitted = asyncio.run(scenario())
    assert time.monotonic() - started < 15
    row = job_row(db, submitted.job_id)
    assert (row["status"], row["attempt"], row["lease_owner"]) == ("queued", 2, None)
    assert not alive(row["process_pid"])


def test_many_queued_jobs_use_a_few_connections(database_url, unique_name, db, tmp_path: Path):
    gate = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
    settings = FAST.model_copy(update={"db_pool_size": 3, "application_name": unique_name})

    async def scenario():
        async with JobRunner(database_url, settings=settings) as runner:
            submitted = [
                await runner.submit(
                    make_request(
                        unique_name, python(code), job_key=f"{unique_name}/{i}", max_concurrency=1
                    )
                )
                for i in range(25)
            ]
            await wait_for_status(database_url, submitted[0].job_id, "started")
            connections = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                (f"{unique_name}%",),
            ).fetchone()
            gate.touch()
            outcomes = [await runner.wait(item.job_id, 120) for item in submitted]
            return connections, outcomes

    connections, outcomes = asyncio.run(scenario())
    # 25 jobs queued or running: 1 owner/LISTEN connection + at most 3 pooled ones
    assert connections is not None and 2 <= connections[0] <= 4
    assert all(outcome.status is JobStatus.SUCCEEDED for outcome in outcomes)


def test_a_stale_started_row_holds_no_slot(database_url, unique_name, db):
    request = make_request(unique_name, python("print('got the slot')"), max_concurrency=1)
    # a job of the same tenant and rule left 'started' with an expired lease (issue 12:
    # such rows held the tenant's slot until a reconcile, 30 s later)
    insert_orphan(db, unique_name, replace(request, job_key=f"{unique_name}/dead"),
                  owner="gone-host:1:dead", lease_in_s=-1)
    settings = FAST.model_copy(update={"heartbeat_s": 60})  # no take-over tick during the test

    async def scenario():
        async with JobRunner(database_url, settings=settings) as runner:
            began = time.monotonic()
            outcome = await runner.run(request, 30)
            return outcome, time.monotonic() - began

    outcome, took = asyncio.run(scenario())
    assert outcome.status is JobStatus.SUCCEEDED
    assert took < 5


def alive(pid: int | None) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    # gone, or a zombie waiting to be reaped: either way no longer running
    return pid is not None and stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


async def wait_for_pid(db: psycopg.Connection, job_id: str, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute("SELECT process_pid FROM public.jobs WHERE id = %s", (job_id,)).fetchone()
        if row and row[0]:
            return int(row[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never recorded its pid")


def test_a_chatty_job_loses_no_line(database_url, unique_name, db):
    count = 30_000  # more than the local backend's line queue: exercises backpressure
    code = f"import sys\nfor i in range({count}): sys.stdout.write(f'{{i}}\\n')"

    async def scenario():
        async with JobRunner(database_url, settings=FAST) as runner:
            return await runner.run(make_request(unique_name, python(code)), 120)

    outcome = asyncio.run(scenario())
    assert outcome.status is JobStatus.SUCCEEDED and outcome.log_lines == count
    stored = db.execute(
        "SELECT line FROM public.job_log_lines WHERE job_id = %s ORDER BY seq", (outcome.job_id,)
    ).fetchall()
    assert [int(row[0]) for row in stored] == list(range(count))
