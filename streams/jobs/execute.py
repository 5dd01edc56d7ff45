"""One leased attempt of a job, from its span to its recorded end.

Launch (with retries), record the process (pid + start time, so a runner taking the
job over can tell it from a reused pid), stream its log lines, enforce the timeout,
and write the end, retried until stored. A write refused because the lease is no
longer ours (the job was taken over) stops the attempt: the process is killed and
nothing more is written for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import SpanKind, Tracer

from base.logs import kv
from streams.jobs import processes, store
from streams.jobs.attempt import LaunchFailed, end_span, span_attributes, start_with_retries, watch
from streams.jobs.environment import build_job_environment, request_trace_env
from streams.jobs.launcher import JobLauncher, RunningJob
from streams.jobs.logsink import LogSink
from streams.jobs.model import JobRequest, JobStatus
from streams.jobs.settings import JobSettings
from streams.jobs.workdir import job_workdir
from tracing.metrics import JOB_WAIT, job_finished
from tracing.propagation import context_from_environment, job_environment, trace_id_hex

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another runner took this job over; this attempt must stop, silently."""


@dataclass
class AttemptContext:
    job_id: str
    attempt: int
    owner: str
    row: dict[str, Any]
    settings: JobSettings
    tracer: Tracer
    store: Callable[..., Awaitable[Any]]
    write: Callable[..., Awaitable[Any]]
    connection: Callable[[], AbstractAsyncContextManager[Any]]
    launcher: Callable[[str], JobLauncher]
    worker_environ: Mapping[str, str]
    job_database_url: str
    on_launch: Callable[[], None]


def _observe_wait(ctx: AttemptContext, request: JobRequest) -> None:
    """Queue wait of this attempt (queued -> claimed), per tenant, for /metrics."""
    queued_at = ctx.row.get("queued_at")
    if isinstance(queued_at, datetime):
        waited = (datetime.now(UTC) - queued_at).total_seconds()
        JOB_WAIT.labels(request.tenant_id).observe(max(0.0, waited))


async def run_attempt(ctx: AttemptContext, request: JobRequest) -> None:
    parent = context_from_environment(request_trace_env(request))
    kind = SpanKind.INTERNAL if request.backend == "local" else SpanKind.CLIENT
    with ctx.tracer.start_as_current_span(
        f"job {request.rule_id}", context=parent, kind=kind,
        attributes=span_attributes(request, ctx.job_id, ctx.attempt),
        record_exception=False, set_status_on_exception=False,
    ) as span:
        trace_id = request.trace_id or trace_id_hex()
        if trace_id and not request.trace_id:
            await ctx.write(store.set_trace_id, ctx.job_id, trace_id)
        span.add_event("started")
        _observe_wait(ctx, request)
        began = time.monotonic()
        try:
            status, exit_code, error = await _execute(ctx, request, trace_id, span)
        except LeaseLost:
            kv(log, "warning", "attempt stopped: the job was taken over", job_id=ctx.job_id,
               attempt=ctx.attempt)
            return
        job_finished(request.tenant_id, request.backend, status.value, began)  # /metrics
        end_span(span, status, exit_code, error)
        stored = await ctx.write(store.finish, ctx.job_id, ctx.attempt, status, me=ctx.owner,
                                 exit_code=exit_code, error=error)
        kv(log, "info" if stored else "warning",
           "job finished" if stored else "job finished after it was taken over; not recorded",
           job_id=ctx.job_id, attempt=ctx.attempt, status=status.value, exit_code=exit_code,
           trace_id=trace_id)


async def _execute(ctx: AttemptContext, request: JobRequest, trace_id: str | None,
                   span: Any) -> tuple[JobStatus, int | None, str | None]:
    async with job_workdir(request.tenant_id, ctx.job_id, ctx.settings.workdir_root) as wd:
        ctx.on_launch()  # from here on a process may exist
        try:
            running = await start_with_retries(
                ctx.launcher, request, job_id=ctx.job_id, workdir=wd,
                env=_environment(ctx, request), settings=ctx.settings, span=span)
        except LaunchFailed as failed:
            return JobStatus.LAUNCH_FAILED, None, failed.error
        try:
            if not await _record_process(ctx, running):
                raise LeaseLost(ctx.job_id)
            first_seq = await ctx.write(store.next_log_seq, ctx.job_id)
        except BaseException:
            await running.close()  # kills it: it must not outlive an attempt we gave up
            raise
        sink = LogSink(ctx.connection, job_id=ctx.job_id, trace_id=trace_id,
                       first_seq=first_seq or 0, batch_lines=ctx.settings.log_batch_lines,
                       flush_s=ctx.settings.log_flush_s,
                       max_chars=ctx.settings.log_line_max_chars)
        return await watch(running, sink, timeout_s=request.timeout_s,
                           kill_grace_s=ctx.settings.kill_grace_s)


async def _record_process(ctx: AttemptContext, running: RunningJob) -> bool:
    pid = getattr(running, "pid", None)
    start = processes.start_ticks(pid) if isinstance(pid, int) else None
    stored = await ctx.write(store.record_process, ctx.job_id, ctx.attempt, me=ctx.owner,
                             backend_ref=running.backend_ref,
                             host=processes.host_name() if pid else None, pid=pid, start=start)
    return bool(stored)


def _environment(ctx: AttemptContext, request: JobRequest) -> dict[str, str]:
    passes_url = ctx.settings.passes_database_url(request.backend)
    return build_job_environment(
        request, job_id=ctx.job_id, attempt=ctx.attempt,
        # the job span's context (current here), else the request's own
        trace_env=job_environment() or request_trace_env(request),
        worker_environ=ctx.worker_environ,
        database_url=ctx.job_database_url if passes_url else None,
    )

