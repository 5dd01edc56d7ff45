"""The job queue across what users lose jobs to: a SIGKILLed runner, a SIGTERM with work
queued, a redelivered record of a stranded job, one tenant's flood, an idle backlog
(issue 12). Runners run as real processes against the real lab DB."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from streams.jobs import JobRequest, JobRunner, JobStatus
from streams.jobs.model import idempotency_key_for
from streams.jobs.settings import JobSettings

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
FAST = JobSettings(launch_backoff_s=0.2, slot_poll_s=0.05, kill_grace_s=1, heartbeat_s=0.5)

# writes <dir>/<attempt>.<pid> (+ its idempotency key), then attempt 1 hangs, later ones end
MARKER_JOB = (
    "import os, pathlib, sys, time\n"
    "d = pathlib.Path(sys.argv[1]); a = os.environ['LABSTREAM_JOB_ATTEMPT']\n"
    "(d / f'{a}.{os.getpid()}').write_text(os.environ['LABSTREAM_JOB_IDEMPOTENCY_KEY'])\n"
    "time.sleep(600 if a == '1' else 0)\n"
)


def request(name: str, key: str, command: tuple[str, ...], **overrides: object) -> JobRequest:
    fields: dict[str, object] = {
        "job_key": f"{name}/{key}", "rule_id": f"{name}-rule", "tenant_id": f"{name}-tenant",
        "experiment_id": None, "backend": "local", "image": None, "command": command,
        "env": {}, "timeout_s": 60, "max_concurrency": 4, "source_topic": None,
        "source_partition": None, "source_offset": None, "traceparent": None,
        "tracestate": None,
    }
    fields.update(overrides)
    return JobRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture
def db(database_url: str, unique_name: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
        conn.execute("DELETE FROM public.jobs WHERE job_key LIKE %s", (f"{unique_name}%",))


class RunnerProcess:
    def __init__(self, tmp_path: Path, index: int, **settings: object) -> None:
        env = {**os.environ, **{f"LABSTREAM_JOBS_{k.upper()}": str(v) for k, v in
                                {"heartbeat_s": 0.5, "kill_grace_s": 1, **settings}.items()}}
        self.log = tmp_path / f"runner-{index}.log"
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "jobs_proc.py")], env=env, stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: "ready" in self.log.read_text(), 30, "the runner to start")

    def kill(self, signum: int = signal.SIGKILL) -> None:
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()
            self.process.wait(10)


def wait_until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def row(db: psycopg.Connection, job_key: str) -> dict:
    from psycopg.rows import dict_row

    with db.cursor(row_factory=dict_row) as cursor:
        found = cursor.execute("SELECT * FROM public.jobs WHERE job_key = %s",
                               (job_key,)).fetchone()
    assert found is not None
    return found


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def submit(database_url: str, *requests: JobRequest) -> list[str]:
    async def go() -> list[str]:
        runner = JobRunner(database_url, settings=FAST, work=False)
        try:
            return [result.job_id for result in await runner.submit_many(list(requests))]
        finally:
            await runner.aclose()

    return asyncio.run(go())


def test_a_sigkilled_runners_job_is_taken_over_its_process_killed_and_run_once_more(
    database_url, unique_name, db, tmp_path: Path
):
    marks = tmp_path / "marks"
    marks.mkdir()
    job = request(unique_name, "k", (sys.executable, "-c", MARKER_JOB, str(marks)))
    first = RunnerProcess(tmp_path, 0)
    second = None
    try:
        submit(database_url, job)
        wait_until(lambda: row(db, job.job_key)["process_pid"] is not None, 30, "a pid")
        orphan = row(db, job.job_key)["process_pid"]
        first.kill()
        first.process.wait(10)
        assert alive(orphan)  # the job outlives its runner: this is what must be cleaned up
        second = RunnerProcess(tmp_path, 1)
        wait_until(lambda: row(db, job.job_key)["status"] == "succeeded", 60, "attempt 2")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    final = row(db, job.job_key)
    assert final["attempt"] == 2 and final["exit_code"] == 0
    assert not alive(orphan)
    attempts = sorted(path.name.split(".")[0] for path in marks.iterdir())
    assert attempts == ["1", "2"]  # each attempt's side effect exactly once
    keys = {path.read_text() for path in marks.iterdir()}
    assert keys == {idempotency_key_for(job.job_key)}


def test_sigterm_hands_back_leased_jobs_and_exits_within_the_grace(
    database_url, unique_name, db, tmp_path: Path
):
    jobs = [request(unique_name, str(i), (sys.executable, "-c", "import time; time.sleep(600)"),
                    max_concurrency=10) for i in range(5)]
    runner = RunnerProcess(tmp_path, 0, max_running=2, stop_grace_s=1)
    try:
        submit(database_url, *jobs)
        wait_until(lambda: sum(row(db, j.job_key)["process_pid"] is not None for j in jobs) == 2,
                   30, "two running jobs")
        pids = [row(db, j.job_key)["process_pid"] for j in jobs]
        began = time.monotonic()
        runner.kill(signal.SIGTERM)
        assert runner.process.wait(15) == 0
        took = time.monotonic() - began
    finally:
        runner.stop()
    rows = [row(db, j.job_key) for j in jobs]
    assert {r["status"] for r in rows} == {"queued"}
    assert {r["lease_owner"] for r in rows} == {None}
    assert sorted(r["attempt"] for r in rows) == [1, 1, 1, 2, 2]  # launched ones: next attempt
    assert not any(alive(pid) for pid in pids if pid)
    assert took < 1 + 5  # grace + the kill


def test_a_redelivered_record_of_a_stranded_job_queues_its_next_attempt(
    database_url, unique_name, db
):
    job = request(unique_name, "k", (sys.executable, "-c", "pass"))
    db.execute(
        "INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, backend, command, status, "
        "lease_owner, lease_expires_at) VALUES (%s, %s, %s, %s, 'local', %s, 'started', "
        "'gone:1:x', now() - interval '1 second')",
        (f"job-{unique_name}"[:40], job.job_key, job.rule_id, job.tenant_id,
         json.dumps(list(job.command))))

    async def go():  # type: ignore[no-untyped-def]
        runner = JobRunner(database_url, settings=FAST, work=False)
        try:
            return await runner.submit(job)
        finally:
            await runner.aclose()

    result = asyncio.run(go())
    assert (result.created, result.status, result.attempt) == (True, JobStatus.QUEUED, 2)
    assert (row(db, job.job_key)["status"], row(db, job.job_key)["lease_owner"]) == ("queued", None)


def test_a_flooding_tenant_does_not_delay_another(database_url, unique_name, db):
    flood = [request(unique_name, f"flood/{i}", (sys.executable, "-c", "import time; "
                                                 "time.sleep(0.3)"), max_concurrency=50)
             for i in range(60)]
    small = request(unique_name, "small", (sys.executable, "-c", "pass"),
                    tenant_id=f"{unique_name}-small")
    settings = FAST.model_copy(update={"max_running": 3})

    def started_flood() -> int:
        found = db.execute("SELECT count(*) FROM public.jobs WHERE job_key LIKE %s AND "
                           "status = 'started'", (f"{unique_name}/flood/%",)).fetchone()
        return int(found[0]) if found else 0

    async def go():  # type: ignore[no-untyped-def]
        async with JobRunner(database_url, settings=settings) as runner:
            await runner.submit_many(flood)
            deadline = time.monotonic() + 30
            while started_flood() < 3:  # the flood holds every slot first
                assert time.monotonic() < deadline, "the flood never filled the 3 slots"
                await asyncio.sleep(0.02)
            await runner.submit(small)
            outcome = await runner.wait(store_id(small), 30)
            return outcome

    outcome = asyncio.run(go())
    small_row = row(db, small.job_key)
    wait_s = (small_row["started_at"] - small_row["queued_at"]).total_seconds()
    queued_flood = db.execute(
        "SELECT count(*) FROM public.jobs WHERE job_key LIKE %s AND status = 'queued'",
        (f"{unique_name}/flood/%",)).fetchone()
    assert outcome.status is JobStatus.SUCCEEDED
    print(f"small tenant waited {wait_s * 1000:.0f} ms behind a 60-job flood")
    # 60 x 0.3 s on 3 slots is 6 s of flood; the small job waits for one slot only
    assert wait_s < 1.0, wait_s
    assert queued_flood is not None and queued_flood[0] > 30  # the flood was still queued


def store_id(job: JobRequest) -> str:
    from streams.jobs.model import job_id_for

    return job_id_for(job.job_key)


def test_an_idle_backlog_of_500_jobs_makes_few_transactions(database_url, unique_name, db):
    blocker = request(unique_name, "blocker", (sys.executable, "-c", "import time; "
                                               "time.sleep(600)"), max_concurrency=1)
    backlog = [request(unique_name, f"b/{i}", (sys.executable, "-c", "pass"), max_concurrency=1)
               for i in range(500)]
    settings = FAST.model_copy(update={"heartbeat_s": 5.0})

    def commits() -> int:
        found = db.execute("SELECT xact_commit FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
        assert found is not None
        return int(found[0])

    async def go() -> float:
        async with JobRunner(database_url, settings=settings) as runner:
            await runner.submit(blocker)
            await runner.submit_many(backlog)
            while row(db, blocker.job_key)["process_pid"] is None:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # pg_stat counters are flushed about once a second
            before, began = commits(), time.monotonic()
            await asyncio.sleep(10)
            rate = (commits() - before - 1) / (time.monotonic() - began)
            await runner.aclose(cancel=True)
            return rate

    rate = asyncio.run(go())
    print(f"idle backlog of 500: {rate:.2f} transactions/s")  # docs/BENCHMARKS.md, with -s
    # the old runner polled each queued job every 0.5 s: 500 jobs, ~800 transactions/s
    assert rate <= 10, rate
