"""`JobRunner`: submit a `JobRequest`, and it is launched once, watched, and recorded.

`submit()` writes (or finds) the `jobs` row and returns at once; the job then
runs in a background task of this runner: wait for a concurrency slot, launch
with retries, stream log lines into `job_log_lines`, enforce the timeout, and
write the final status. `wait()`/`run()` are for callers that want the outcome.

Database use per worker: one connection holding the jobs' liveness locks
(`liveness.py`) and a small pool (`LABSTREAM_JOBS_DB_POOL_SIZE`) for the writes,
however many jobs are queued or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, TracerProvider
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from base.db import mask_url, resolve_url
from base.errors import ServiceUnavailable
from base.logs import kv
from streams.jobs import store
from streams.jobs.attempt import LaunchFailed, end_span, span_attributes, start_with_retries, watch
from streams.jobs.environment import build_job_environment, request_trace_env
from streams.jobs.exceptions import JobsError
from streams.jobs.launcher import JobLauncher
from streams.jobs.liveness import LivenessLocks
from streams.jobs.logsink import LogSink
from streams.jobs.model import JobOutcome, JobRequest, JobStatus, SubmitResult
from streams.jobs.registry import build_launcher
from streams.jobs.settings import JobSettings
from streams.jobs.workdir import job_workdir
from tracing.metrics import JOB_WAIT, job_finished
from tracing.propagation import context_from_environment, job_environment, trace_id_hex

log = logging.getLogger(__name__)
T = TypeVar("T")
DB_HINT = "start it with `labstream stack up` or fix LABSTREAM_DATABASE_URL"


class JobRunner:
    """Launches jobs once per job_key, within per-tenant limits, and records them.

    `backends` maps a backend name to a ready `JobLauncher`; names not given are
    built from `JOB_BACKENDS` on first use. `job_database_url` (default: the
    runner's own URL) is given to jobs as LABSTREAM_DATABASE_URL, only on the
    backends listed in `LABSTREAM_JOBS_DATABASE_URL_BACKENDS` (default: local).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        backends: Mapping[str, JobLauncher] | None = None,
        settings: JobSettings | None = None,
        job_database_url: str | None = None,
        worker_environ: Mapping[str, str] | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._database_url = resolve_url(database_url)
        self._settings = settings or JobSettings()
        self._launchers: dict[str, JobLauncher] = dict(backends or {})
        self._job_database_url = job_database_url or self._database_url
        self._worker_environ = worker_environ
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slot_freed: asyncio.Event | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pool_opening = asyncio.Lock()
        self._liveness = LivenessLocks(
            self._database_url, application_name=f"{self._settings.application_name}-liveness"
        )
        # None: the global provider (configure_tracing), resolved when the first span starts
        self._tracer = trace.get_tracer("streams.jobs", tracer_provider=tracer_provider)

    # -- public API -------------------------------------------------------------------------

    async def __aenter__(self) -> JobRunner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def reconcile(self) -> list[str]:
        """Call once when a worker starts: jobs whose worker died become failed 'worker lost'.

        Safe with other workers running: a job still held by a live worker is left alone.
        """
        lost = await self._store(store.reconcile)
        if lost:
            kv(log, "warning", "jobs of a lost worker marked failed", jobs=",".join(lost))
        return lost

    async def submit(self, request: JobRequest) -> SubmitResult:
        """Queue `request` unless its job_key is queued, running, or succeeded already.

        Returns once the row is written; the job runs in the background.
        """
        claim = await self._store(store.claim, request, self._hold)
        if not claim.created:
            kv(
                log,
                "info",
                "job already known, not launched",
                job_id=claim.job_id,
                job_key=request.job_key,
                status=claim.status.value,
            )
            return SubmitResult(claim.job_id, False, claim.status, claim.attempt)
        task = asyncio.create_task(self._run_attempt(claim, request), name=claim.job_id)
        self._tasks[claim.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(claim.job_id, None))
        kv(
            log,
            "info",
            "job queued",
            job_id=claim.job_id,
            job_key=request.job_key,
            attempt=claim.attempt,
            backend=request.backend,
        )
        return SubmitResult(claim.job_id, True, JobStatus.QUEUED, claim.attempt)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobOutcome:
        """The outcome once the job is terminal (polls the DB for jobs of other workers)."""
        async with asyncio.timeout(timeout):
            task = self._tasks.get(job_id)
            if task is not None:
                await asyncio.shield(task)
            while True:
                outcome = await self._store(store.load_outcome, job_id)
                if outcome is None:
                    raise JobsError(f"no job {job_id!r} in the jobs table")
                if outcome.status.is_terminal:
                    return outcome
                await asyncio.sleep(self._settings.slot_poll_s)

    async def run(self, request: JobRequest, timeout: float | None = None) -> JobOutcome:
        """`submit` then `wait` (for the CLI and tests)."""
        submitted = await self.submit(request)
        return await self.wait(submitted.job_id, timeout)

    async def aclose(self, *, cancel: bool = False) -> None:
        """Wait for this runner's jobs to end (`cancel=True`: kill them, status failed)."""
        tasks = list(self._tasks.values())
        if cancel:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self._liveness.close()

    # -- database ---------------------------------------------------------------------------

    async def _open_pool(self) -> AsyncConnectionPool[Any]:
        async with self._pool_opening:
            if self._pool is None:
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self._database_url,
                    min_size=1,
                    max_size=self._settings.db_pool_size,
                    kwargs={
                        "autocommit": True,
                        "application_name": self._settings.application_name,
                    },
                    open=False,
                    name="labstream-jobs",
                )
                try:
                    await pool.open(wait=True, timeout=10)
                except PoolTimeout as exc:
                    await pool.close()
                    raise ServiceUnavailable(
                        f"job runner cannot reach the lab database at "
                        f"{mask_url(self._database_url)}",
                        hint=DB_HINT,
                    ) from exc
                self._pool = pool
            return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = await self._open_pool()
        async with pool.connection() as conn:
            yield conn

    async def _store(self, operation: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run one `store` function on a pooled connection."""
        async with self._connection() as conn:
            return await operation(conn, *args, **kwargs)

    async def _hold(self, job_id: str) -> None:
        try:
            await self._liveness.hold(job_id)
        except psycopg.OperationalError as exc:
            raise ServiceUnavailable(
                f"job runner cannot reach the lab database at {mask_url(self._database_url)}",
                hint=DB_HINT,
            ) from exc

    # -- one attempt ------------------------------------------------------------------------

    async def _run_attempt(self, claim: store.Claim, request: JobRequest) -> None:
        parent = context_from_environment(request_trace_env(request))
        kind = SpanKind.INTERNAL if request.backend == "local" else SpanKind.CLIENT
        try:
            with self._tracer.start_as_current_span(
                f"job {request.rule_id}",
                context=parent,
                kind=kind,
                attributes=span_attributes(request, claim.job_id, claim.attempt),
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                trace_id = request.trace_id or trace_id_hex()
                if trace_id and not request.trace_id:
                    await self._store(store.set_trace_id, claim.job_id, trace_id)
                began = time.monotonic()
                status, exit_code, error = await self._execute(claim, request, trace_id, span)
                job_finished(request.tenant_id, request.backend, status.value, began)  # /metrics
                end_span(span, status, exit_code, error)
                await self._store(
                    store.finish,
                    claim.job_id,
                    claim.attempt,
                    status,
                    exit_code=exit_code,
                    error=error,
                )
                kv(
                    log,
                    "info",
                    "job finished",
                    job_id=claim.job_id,
                    status=status.value,
                    exit_code=exit_code,
                    trace_id=trace_id,
                )
        except asyncio.CancelledError:
            await asyncio.shield(self._finish_quietly(claim, "worker stopped"))
            raise
        except Exception as exc:  # a bug or a DB failure: never leave the row 'started'
            kv(log, "error", "job runner failed", job_id=claim.job_id, error=repr(exc))
            await self._finish_quietly(claim, f"runner error: {exc}")
        finally:
            await self._liveness.release(claim.job_id)
            self._wake_slot_waiters()

    async def _finish_quietly(self, claim: store.Claim, error: str) -> None:
        with contextlib.suppress(Exception):
            await self._store(
                store.finish, claim.job_id, claim.attempt, JobStatus.FAILED, error=error
            )

    async def _execute(
        self, claim: store.Claim, request: JobRequest, trace_id: str | None, span: Span
    ) -> tuple[JobStatus, int | None, str | None]:
        queued = time.monotonic()
        await self._wait_for_slot(claim.job_id, request)
        JOB_WAIT.labels(request.tenant_id).observe(time.monotonic() - queued)  # /metrics
        span.add_event("started")
        async with job_workdir(request.tenant_id, claim.job_id, self._settings.workdir_root) as wd:
            try:
                running = await start_with_retries(
                    self._launcher,
                    request,
                    job_id=claim.job_id,
                    workdir=wd,
                    env=self._environment(claim, request),
                    settings=self._settings,
                    span=span,
                )
            except LaunchFailed as failed:
                return JobStatus.LAUNCH_FAILED, None, failed.error
            await self._store(store.set_backend_ref, claim.job_id, running.backend_ref)
            sink = LogSink(
                self._connection,
                job_id=claim.job_id,
                trace_id=trace_id,
                first_seq=await self._store(store.next_log_seq, claim.job_id),
                batch_lines=self._settings.log_batch_lines,
                flush_s=self._settings.log_flush_s,
                max_chars=self._settings.log_line_max_chars,
            )
            return await watch(
                running, sink, timeout_s=request.timeout_s, kill_grace_s=self._settings.kill_grace_s
            )

    def _environment(self, claim: store.Claim, request: JobRequest) -> dict[str, str]:
        passes_url = self._settings.passes_database_url(request.backend)
        return build_job_environment(
            request,
            job_id=claim.job_id,
            attempt=claim.attempt,
            # the job span's context (current here), else the request's own
            trace_env=job_environment() or request_trace_env(request),
            worker_environ=os.environ if self._worker_environ is None else self._worker_environ,
            database_url=self._job_database_url if passes_url else None,
        )

    def _launcher(self, backend: str) -> JobLauncher:
        launcher = self._launchers.get(backend)
        if launcher is None:
            launcher = build_launcher(backend, self._settings)
            self._launchers[backend] = launcher
        return launcher

    # -- concurrency slots ------------------------------------------------------------------

    async def _wait_for_slot(self, job_id: str, request: JobRequest) -> None:
        loop = asyncio.get_running_loop()
        next_reconcile = loop.time() + self._settings.slot_reconcile_s
        while not await self._store(store.try_take_slot, job_id, request):
            if loop.time() >= next_reconcile:
                # a dead worker's 'started' jobs hold slots until someone reconciles them
                await self._store(
                    store.reconcile, tenant_id=request.tenant_id, rule_id=request.rule_id
                )
                next_reconcile = loop.time() + self._settings.slot_reconcile_s
            if self._slot_freed is None:
                self._slot_freed = asyncio.Event()
            # a local job ending wakes us at once; other workers' jobs are seen by polling
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), self._settings.slot_poll_s)

    def _wake_slot_waiters(self) -> None:
        if self._slot_freed is not None:
            self._slot_freed.set()
            self._slot_freed = asyncio.Event()
