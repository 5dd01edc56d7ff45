"""The steps of one job attempt once it has a slot: launch (with retries) and watch.

Plain functions, so the runner stays about bookkeeping: `start_with_retries`
turns backend failures into retries and then one `LaunchFailed`; `watch` runs the
job to its end (exit, or timeout and kill) while its lines go to the log sink.
The span helpers put the outcome on the job's span.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from base.logs import kv
from streams.jobs.exceptions import JobStartError
from streams.jobs.launcher import JobLauncher, RunningJob
from streams.jobs.logsink import LogSink
from streams.jobs.model import JobRequest, JobStatus
from streams.jobs.settings import JobSettings
from tracing import semconv

log = logging.getLogger(__name__)

LOG_DRAIN_S = 5.0  # after exit, how long output still in the pipes may take to arrive
LAB_JOB_KEY = "lab.job.key"
LAB_JOB_ATTEMPT = "lab.job.attempt"
LAB_JOB_STATUS = "lab.job.status"

Ending = tuple[JobStatus, int | None, str | None]  # status, exit code, error


class LaunchFailed(Exception):
    """The job could not be started; `error` is what the jobs row will say."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


async def start_with_retries(
    launcher_for: Callable[[str], JobLauncher],
    request: JobRequest,
    *,
    job_id: str,
    workdir: Path,
    env: Mapping[str, str],
    settings: JobSettings,
    span: Span,
) -> RunningJob:
    """Start the job; `JobStartError` is retried with exponential backoff, anything else not."""
    tries = settings.launch_attempts
    for number in range(1, tries + 1):
        try:
            launcher = launcher_for(request.backend)
            return await launcher.start(request, job_id=job_id, workdir=workdir, env=env)
        except JobStartError as exc:
            span.add_event("launch failed", {"attempt": number, "error": exc.message})
            kv(
                log,
                "warning",
                "job launch failed",
                job_id=job_id,
                attempt=number,
                of=tries,
                error=exc.message,
            )
            if number == tries:
                raise LaunchFailed(f"launch failed after {tries} tries: {exc.message}") from exc
            delay = settings.launch_backoff_s * 2 ** (number - 1)
            await asyncio.sleep(min(delay, settings.launch_backoff_max_s))
        except Exception as exc:  # config errors, bugs in a backend: retrying will not help
            span.add_event("launch failed", {"attempt": number, "error": str(exc)})
            raise LaunchFailed(f"launch failed: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def watch(
    running: RunningJob, sink: LogSink, *, timeout_s: float, kill_grace_s: float
) -> Ending:
    """Run the started job to its end, its lines into `sink`; always `close()`s it."""
    log_task = asyncio.create_task(sink.consume(running.lines()))
    try:
        try:
            exit_code: int | None = await running.wait(timeout_s)
            status = JobStatus.SUCCEEDED if exit_code == 0 else JobStatus.FAILED
            error = None if exit_code == 0 else f"exited with code {exit_code}"
        except TimeoutError:
            await running.kill()
            status, error = JobStatus.TIMED_OUT, f"killed after timeout_s={timeout_s}"
            try:
                exit_code = await running.wait(kill_grace_s + 5)
            except TimeoutError:
                exit_code = None
        await asyncio.wait({log_task}, timeout=LOG_DRAIN_S)
    finally:
        await running.close()  # kills it when we got here by cancellation
        (log_result,) = await asyncio.gather(log_task, return_exceptions=True)
        if isinstance(log_result, Exception):  # the job's outcome stands; its lines stop here
            kv(log, "warning", "job log stream failed", job_id=sink.job_id, error=repr(log_result))
    return status, exit_code, error


def span_attributes(request: JobRequest, job_id: str, attempt: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        semconv.LAB_JOB_ID: job_id,
        LAB_JOB_KEY: request.job_key,
        semconv.LAB_JOB_BACKEND: request.backend,
        semconv.LAB_RULE_ID: request.rule_id,
        semconv.LAB_TENANT_ID: request.tenant_id,
        LAB_JOB_ATTEMPT: attempt,
    }
    if request.experiment_id:
        attributes[semconv.LAB_EXPERIMENT_ID] = request.experiment_id
    return attributes


def end_span(span: Span, status: JobStatus, exit_code: int | None, error: str | None) -> None:
    span.set_attribute(LAB_JOB_STATUS, status.value)
    if exit_code is not None:
        span.set_attribute(semconv.LAB_JOB_EXIT_CODE, exit_code)
    if status is JobStatus.SUCCEEDED:
        span.set_status(Status(StatusCode.OK))
    else:
        span.set_status(Status(StatusCode.ERROR, error or status.value))
