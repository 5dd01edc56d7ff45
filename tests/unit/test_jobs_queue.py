"""Pure parts of the job queue: fair picking, the job's identity, status-write retries,
and telling a job's own processes from a reused pid."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import psycopg

from streams.jobs import processes
from streams.jobs.model import idempotency_key_for, job_id_for
from streams.jobs.runner import JobRunner
from streams.jobs.settings import JobSettings
from streams.jobs.store import pick


def test_pick_respects_each_tenant_rules_limit_and_the_capacity() -> None:
    candidates = [("a1", "A", "r", 2), ("b1", "B", "r", 1), ("a2", "A", "r", 2),
                  ("b2", "B", "r", 1), ("a3", "A", "r", 2)]
    assert pick(candidates, {}, capacity=10) == ["a1", "b1", "a2"]
    assert pick(candidates, {("A", "r"): 2}, capacity=10) == ["b1"]
    assert pick(candidates, {}, capacity=2) == ["a1", "b1"]


def test_job_id_and_idempotency_key_are_stable_and_distinct() -> None:
    assert job_id_for("rule/event") == job_id_for("rule/event")
    assert job_id_for("rule/event") != job_id_for("rule/other")
    assert len(idempotency_key_for("rule/event")) == 32
    assert idempotency_key_for("rule/event") != job_id_for("rule/event")[4:]


def test_a_status_write_is_retried_until_it_is_stored() -> None:
    runner = JobRunner("postgresql://nobody@127.0.0.1:1/none",
                       settings=JobSettings(retry_max_s=0.01))
    calls = []

    async def flaky_store(operation, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        if len(calls) < 4:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await operation(None, *args, **kwargs)

    async def write_status(_conn, job_id):  # type: ignore[no-untyped-def]
        return f"stored {job_id}"

    runner._store = flaky_store  # type: ignore[method-assign]
    assert asyncio.run(runner._write(write_status, "job-1")) == "stored job-1"
    assert len(calls) == 4


def test_a_write_with_a_deadline_gives_up_and_says_so() -> None:
    runner = JobRunner("postgresql://nobody@127.0.0.1:1/none",
                       settings=JobSettings(retry_max_s=0.01))

    async def down(operation, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise psycopg.OperationalError("down")

    runner._store = down  # type: ignore[method-assign]

    async def write_status(_conn):  # type: ignore[no-untyped-def]
        return "never"

    assert asyncio.run(runner._write(write_status, deadline_s=0.3)) is None


def test_kill_attempt_finds_the_job_by_its_environment_and_spares_a_reused_pid() -> None:
    env = {**os.environ, "LABSTREAM_JOB_ID": "job-unit-kill", "LABSTREAM_JOB_ATTEMPT": "1"}
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env,
                           start_new_session=True)
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**env, "LABSTREAM_JOB_ATTEMPT": "2"}, start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while processes.start_ticks(job.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        # a recorded start time that does not match: that pid is someone else's now
        wrong_start = (processes.start_ticks(bystander.pid) or 0) + 1
        killed = processes.kill_attempt("job-unit-kill", 1, pid=bystander.pid,
                                        start=wrong_start)
        assert killed == [job.pid]
        assert job.wait(5) == -9
        assert later.poll() is None and bystander.poll() is None  # attempt 2 and others live
    finally:
        for process in (job, later, bystander):
            process.kill()
            process.wait()


def test_a_take_over_stops_the_container_of_an_abandoned_attempt_first() -> None:
    from streams.jobs.store import Stranded

    stopped: list[str] = []

    class ContainerBackend:
        name = "docker"

        async def start(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError("not started here")

        def stop_abandoned(self, backend_ref: str) -> bool:
            stopped.append(backend_ref)
            return True

    runner = JobRunner("postgresql://nobody@127.0.0.1:1/none",
                       backends={"docker": ContainerBackend()})  # type: ignore[dict-item]
    runner._reap(Stranded("job-1", 1, "dead-runner", None, None, None, "docker",
                          "container:abc"))
    runner._reap(Stranded("job-2", 1, "dead-runner", None, None, None, "local", "4242"))
    assert stopped == ["container:abc"]  # local attempts: their process group (above)
