"""The local backend with real short subprocesses: environment, workdir, lines, kill."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streams.jobs.backends.local import LocalLauncher
from streams.jobs.environment import build_job_environment
from streams.jobs.exceptions import JobStartError
from streams.jobs.model import JobRequest
from streams.jobs.workdir import job_workdir

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def request(*command: str, **overrides: object) -> JobRequest:
    fields: dict[str, Any] = {
        "job_key": "rule-a/lab.public.runs/0/42",
        "rule_id": "rule-a",
        "tenant_id": "acme",
        "experiment_id": "exp-1",
        "backend": "local",
        "image": None,
        "command": command,
        "env": {"RULE_SETTING": "from-rule"},
        "timeout_s": 10,
        "max_concurrency": 2,
        "source_topic": "lab.public.runs",
        "source_partition": 0,
        "source_offset": 42,
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=1",
    }
    fields.update(overrides)
    return JobRequest(**fields)


async def run_to_end(job_request: JobRequest, timeout: float = 10) -> tuple[int, list, Path]:
    launcher = LocalLauncher(kill_grace_s=1)
    async with job_workdir(job_request.tenant_id, "job-test") as workdir:
        env = build_job_environment(
            job_request,
            job_id="job-test",
            attempt=1,
            trace_env={"TRACEPARENT": job_request.traceparent or ""},
            worker_environ=os.environ,
        )
        running = await launcher.start(job_request, job_id="job-test", workdir=workdir, env=env)
        lines = [item async for item in running.lines()]
        exit_code = await running.wait(timeout)
        await running.close()
        assert workdir.is_dir()
    return exit_code, lines, workdir


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_environment_is_scrubbed_and_carries_trace_and_job_identity(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-secret")
    monkeypatch.setenv("LABSTREAM_DATABASE_URL", "postgresql://lab:secret@db/lab")
    code = "import os, json; print(json.dumps(dict(os.environ), sort_keys=True))"
    exit_code, lines, workdir = asyncio.run(run_to_end(request(*python(code))))
    assert exit_code == 0
    import json

    env = json.loads(lines[0][1])
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "LABSTREAM_DATABASE_URL" not in env  # copied from the worker: never; see the runner
    assert env["TRACEPARENT"] == TRACEPARENT
    assert env["RULE_SETTING"] == "from-rule"
    assert env["LABSTREAM_JOB_ID"] == "job-test"
    assert env["LABSTREAM_JOB_KEY"] == "rule-a/lab.public.runs/0/42"
    assert env["HOME"] == str(workdir)
    assert set(env) <= {
        "PATH",
        "LANG",
        "HOME",
        "PYTHONUNBUFFERED",
        "TRACEPARENT",
        "RULE_SETTING",
        "LABSTREAM_JOB_ID",
        "LABSTREAM_JOB_KEY",
        "LABSTREAM_JOB_ATTEMPT",
        "LABSTREAM_JOB_IDEMPOTENCY_KEY",
        "LABSTREAM_RULE_ID",
        "LABSTREAM_TENANT_ID",
        "LABSTREAM_EXPERIMENT_ID",
        "OTEL_SERVICE_NAME",  # the job's own spans: its name and resource attributes
        "OTEL_RESOURCE_ATTRIBUTES",
        "LC_CTYPE",  # added by CPython itself on some locales (PEP 538), not by us
    }


def test_job_runs_in_its_own_temp_dir_which_is_removed_afterwards():
    code = "import os; print(os.getcwd()); open('scratch.txt', 'w').write('x')"
    first = asyncio.run(run_to_end(request(*python(code))))
    second = asyncio.run(run_to_end(request(*python(code))))
    assert first[1][0][1] == str(first[2])
    assert first[2] != second[2]
    assert "acme" in first[2].name
    assert not first[2].exists() and not second[2].exists()


def test_stdout_and_stderr_lines_in_order_per_stream_including_a_last_line_without_newline():
    code = (
        "import sys\n"
        "for i in range(50): print(f'out {i}')\n"
        "print('oops', file=sys.stderr)\n"
        "sys.stdout.write('no newline at end')\n"
    )
    exit_code, lines, _ = asyncio.run(run_to_end(request(*python(code))))
    assert exit_code == 0
    stdout = [line for stream, line in lines if stream == "stdout"]
    assert stdout == [f"out {i}" for i in range(50)] + ["no newline at end"]
    assert [line for stream, line in lines if stream == "stderr"] == ["oops"]


def test_non_zero_exit_code_is_returned():
    exit_code, _, _ = asyncio.run(run_to_end(request(*python("raise SystemExit(7)"))))
    assert exit_code == 7


def test_missing_executable_is_a_retryable_start_error():
    async def start() -> None:
        async with job_workdir("acme", "job-missing") as workdir:
            await LocalLauncher().start(
                request("/nonexistent/labstream-no-such-tool"),
                job_id="job-missing",
                workdir=workdir,
                env={},
            )

    with pytest.raises(JobStartError, match="labstream-no-such-tool"):
        asyncio.run(start())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_then_kill_stops_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    # the job forks a grandchild that ignores nothing and would outlive a plain kill of the leader
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )

    async def scenario() -> tuple[int, int]:
        async with job_workdir("acme", "job-slow") as workdir:
            running = await LocalLauncher(kill_grace_s=1).start(
                request(*python(code)), job_id="job-slow", workdir=workdir, env={}
            )
            with pytest.raises(TimeoutError):
                await running.wait(1.0)
            await running.kill()
            exit_code = await running.wait(5)
            await running.close()
            return exit_code, running.pid

    started = time.monotonic()
    exit_code, leader_pid = asyncio.run(scenario())
    assert time.monotonic() - started < 15
    assert exit_code < 0  # killed by a signal
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert not _alive(leader_pid)


def test_close_kills_background_processes_left_behind_by_a_finished_job(tmp_path):
    pid_file = tmp_path / "bg.pid"
    code = (
        "import subprocess\n"
        f"p = subprocess.Popen(['sleep', '60']); open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('leaving a background process')\n"
    )

    async def scenario() -> int:
        async with job_workdir("acme", "job-bg") as workdir:
            running = await LocalLauncher(kill_grace_s=1).start(
                request(*python(code)), job_id="job-bg", workdir=workdir, env={}
            )
            exit_code = await running.wait(10)
            # the sleeping child still holds stdout open: lines() would not end by itself
            await running.close()
            return exit_code

    assert asyncio.run(asyncio.wait_for(scenario(), 20)) == 0
    background = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(background)
