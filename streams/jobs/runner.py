"""`JobRunner`: a durable job queue in the lab DB, and the runner that works it.

`submit()` writes (or finds) the `jobs` row as `queued` and returns: the job is then
owned by the database, not by this process. Every runner (one per worker) claims
queued jobs with a lease (`store.claim`: FOR UPDATE SKIP LOCKED, round robin over
tenants, within each (tenant, rule)'s max_concurrency), runs them, renews its leases
by heartbeat and records the end of each attempt, retrying until it is stored.
A runner whose session is gone (its owner lock is free) or whose lease expired loses
its jobs to the next runner that looks (`store.take_over`): what is left of the
abandoned attempt on this host is killed (its process group, found by pid + start
time and by its environment), and the next attempt is queued. See docs/jobs.md.

The runner sleeps until something can have changed: a submit or a finished job in
this process, a NOTIFY `labstream_jobs` from another runner, or the heartbeat tick.

Database use per runner: one connection holding the owner lock and LISTEN, and a
small pool (`LABSTREAM_JOBS_DB_POOL_SIZE`) for the writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from opentelemetry import trace
from opentelemetry.trace import TracerProvider
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from base.db import mask_url, resolve_url
from base.errors import ServiceUnavailable
from base.logs import kv
from streams.jobs import processes, store
from streams.jobs.exceptions import InvalidJobRequest, JobsError
from streams.jobs.execute import AttemptContext, run_attempt
from streams.jobs.launcher import AbandonedStopper, JobLauncher
from streams.jobs.model import JobOutcome, JobRequest, JobStatus, SubmitResult
from streams.jobs.owner import OwnerSession
from streams.jobs.registry import build_launcher
from streams.jobs.settings import JobSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
DB_HINT = "start it with `labstream stack up` or fix LABSTREAM_DATABASE_URL"


@dataclass
class Leased:
    """One attempt this runner holds a lease on."""

    job_id: str
    attempt: int
    task: asyncio.Task[None] | None = None
    launched: bool = False  # a process may exist: handing it back costs an attempt
    lease_lost: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class JobRunner:
    """Claims queued jobs under a lease, runs them, and records how each attempt ended.

    `backends` maps a backend name to a ready `JobLauncher`; names not given are
    built from `JOB_BACKENDS` on first use. `job_database_url` (default: the
    runner's own URL) is given to jobs as LABSTREAM_DATABASE_URL, only on the
    backends listed in `LABSTREAM_JOBS_DATABASE_URL_BACKENDS` (default: local).
    `work=False`: a runner that only submits (nothing is claimed or run here).
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
        work: bool = True,
    ) -> None:
        self._database_url = resolve_url(database_url)
        self._settings = settings or JobSettings()
        self._launchers: dict[str, JobLauncher] = dict(backends or {})
        self._job_database_url = job_database_url or self._database_url
        self._worker_environ = worker_environ
        self._work = work
        self.owner = f"{processes.host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leased: dict[str, Leased] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pool_opening = asyncio.Lock()
        self._session = OwnerSession(self._database_url, self.owner, on_notify=self._wake.set,
                                     application_name=f"{self._settings.application_name}-owner")
        # None: the global provider (configure_tracing), resolved when the first span starts
        self._tracer = trace.get_tracer("streams.jobs", tracer_provider=tracer_provider)

    # -- public API -------------------------------------------------------------------------

    async def __aenter__(self) -> JobRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Open the DB connections and start claiming (idempotent)."""
        await self._open_pool()
        if self._work and self._loop_task is None:
            await self._session.start()
            self._loop_task = asyncio.create_task(self._work_loop(), name=f"jobs {self.owner}")

    async def reconcile(self) -> list[str]:
        """Take over, now, every job whose runner is gone; returns their ids.

        Their next attempt is queued (not failed): nothing accepted is dropped.
        """
        await self.start()
        taken = await self._store(store.take_over, me=self.owner, reap=self._reap)
        return [item.job_id for item in taken]

    async def submit(self, request: JobRequest) -> SubmitResult:
        """Queue `request` unless its job_key is queued, running, or succeeded already."""
        (result,) = await self.submit_many([request])
        return result

    async def submit_many(self, requests: Sequence[JobRequest]) -> list[SubmitResult]:
        """Queue several requests in one transaction (one round trip per batch of records)."""
        if self._stopping:
            raise JobsError("the job runner is stopping; submit to another worker")
        await self.start()
        claims = await self._store(store.enqueue, requests, me=self.owner, reap=self._reap)
        results = []
        for request, claim in zip(requests, claims, strict=True):
            kv(log, "info", "job queued" if claim.created else "job already known, not queued",
               job_id=claim.job_id, job_key=request.job_key, attempt=claim.attempt,
               status=claim.status.value)
            results.append(SubmitResult(claim.job_id, claim.created, claim.status, claim.attempt))
        if any(claim.created for claim in claims):
            self._wake.set()
        return results

    async def wait(self, job_id: str, timeout: float | None = None) -> JobOutcome:
        """The outcome once the job is terminal (whichever runner ran it)."""
        async with asyncio.timeout(timeout):
            while True:
                leased = self._leased.get(job_id)
                if leased is not None and leased.task is not None:
                    await asyncio.wait({leased.task})
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

    async def aclose(self, *, cancel: bool = False, grace_s: float | None = None) -> None:
        """Stop claiming; give running jobs `grace_s` (default stop_grace_s; 0 with
        `cancel=True`) to end, then kill them and hand them back as their next attempt.
        Leased jobs not launched yet are handed back at once."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        grace = 0.0 if cancel else (self._settings.stop_grace_s if grace_s is None else grace_s)
        tasks = {item.task for item in self._leased.values() if item.task is not None}
        if tasks:
            kv(log, "info", "waiting for running jobs before stopping", jobs=len(tasks),
               grace_s=grace)
            _, late = await asyncio.wait(tasks, timeout=grace) if grace > 0 else (set(), tasks)
            for task in late:
                task.cancel()  # the attempt kills its process and hands the job back
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._session.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def running(self) -> int:
        return len(self._leased)

    # -- the loop ---------------------------------------------------------------------------

    async def _work_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                if loop.time() >= next_tick:
                    await self._tick()
                    next_tick = loop.time() + self._settings.heartbeat_s
                await self._claim()
            except (psycopg.Error, PoolTimeout, ServiceUnavailable) as exc:
                kv(log, "warning", "job queue unreachable; retrying", error=repr(exc))
                next_tick = loop.time() + min(1.0, self._settings.heartbeat_s)
            except Exception as exc:  # a bug must not stop the claiming for good
                kv(log, "error", "job queue loop failed; retrying", error=repr(exc))
                next_tick = loop.time() + self._settings.heartbeat_s
            timeout = max(0.0, next_tick - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _tick(self) -> None:
        """Heartbeat our leases (killing attempts whose lease we lost), then take over."""
        if self._leased:
            held = await self._store(store.heartbeat, me=self.owner, job_ids=list(self._leased),
                                     lease_s=self._settings.lease_s)
            for job_id, item in list(self._leased.items()):
                if job_id not in held and item.task is not None and not item.task.done():
                    kv(log, "warning", "lease lost; stopping this attempt (another runner "
                       "runs the next one)", job_id=job_id, attempt=item.attempt)
                    item.lease_lost = True
                    item.task.cancel()
        # right after (re)connecting, the other runners may not have taken their owner locks
        # back yet (a PostgreSQL restart frees them all): only expired leases count then
        check_owners = self._session.up_for() >= 2 * self._settings.heartbeat_s
        taken = await self._store(store.take_over, me=self.owner, reap=self._reap,
                                  check_owners=check_owners)
        if taken:
            kv(log, "warning", "took over jobs of a runner that is gone; next attempts queued",
               jobs=",".join(item.job_id for item in taken))

    async def _claim(self) -> None:
        capacity = self._settings.max_running - len(self._leased)
        if capacity <= 0 or self._stopping:
            return
        rows = await self._store(store.claim, me=self.owner, capacity=capacity,
                                 lease_s=self._settings.lease_s)
        for row in rows:
            item = Leased(row["id"], row["attempt"])
            self._leased[item.job_id] = item
            item.task = asyncio.create_task(self._run_leased(item, row), name=item.job_id)

    def _reap(self, stranded: store.Stranded) -> None:
        if stranded.process_host not in (None, processes.host_name()):
            kv(log, "warning", "abandoned attempt ran on another host; it cannot be killed "
               "from here", job_id=stranded.job_id, host=stranded.process_host)
        killed = processes.kill_attempt(stranded.job_id, stranded.attempt,
                                        pid=stranded.process_pid, start=stranded.process_start)
        if killed:
            kv(log, "warning", "killed the processes of an abandoned attempt",
               job_id=stranded.job_id, attempt=stranded.attempt, pids=killed)
        if stranded.backend not in (None, "local") and stranded.backend_ref:
            self._stop_container(stranded)

    def _stop_container(self, stranded: store.Stranded) -> None:
        """Stop the container/Job/task of an abandoned attempt before the next is queued.

        A failure here aborts the take-over (the transaction rolls back; the next tick tries
        again): queuing the next attempt beside a still-running one would run it twice."""
        assert stranded.backend is not None and stranded.backend_ref is not None
        launcher = self._launcher(stranded.backend)
        if not isinstance(launcher, AbandonedStopper):
            kv(log, "warning", "the backend cannot stop an abandoned attempt",
               backend=stranded.backend, job_id=stranded.job_id)
            return
        stopped = launcher.stop_abandoned(stranded.backend_ref)
        kv(log, "warning", "stopped the container of an abandoned attempt" if stopped
           else "the abandoned attempt's container was gone already", job_id=stranded.job_id,
           attempt=stranded.attempt, backend=stranded.backend, ref=stranded.backend_ref)

    # -- one attempt ------------------------------------------------------------------------

    async def _run_leased(self, item: Leased, row: dict[str, Any]) -> None:
        try:
            try:
                request = store.request_from_row(row)
            except InvalidJobRequest as exc:
                await self._write(store.finish, item.job_id, item.attempt,
                                  JobStatus.LAUNCH_FAILED, me=self.owner, error=exc.message)
                return
            ctx = AttemptContext(
                job_id=item.job_id, attempt=item.attempt, owner=self.owner, row=row,
                settings=self._settings, tracer=self._tracer, store=self._store,
                write=self._write, connection=self._connection, launcher=self._launcher,
                worker_environ=os.environ if self._worker_environ is None
                else self._worker_environ,
                job_database_url=self._job_database_url, on_launch=lambda: _mark(item))
            await run_attempt(ctx, request)
        except asyncio.CancelledError:
            if item.launched:  # cancelled mid-launch, a process may exist that we hold no handle of
                processes.kill_attempt(item.job_id, item.attempt, pid=None, start=None)
            if not item.lease_lost:
                await asyncio.shield(self._hand_back(item))
            raise
        except Exception as exc:  # a bug: never leave the row leased to a live runner
            kv(log, "error", "job runner failed", job_id=item.job_id, error=repr(exc))
            await self._write(store.finish, item.job_id, item.attempt, JobStatus.FAILED,
                              me=self.owner, error=f"runner error: {exc}")
        finally:
            self._leased.pop(item.job_id, None)
            self._wake.set()

    async def _hand_back(self, item: Leased) -> None:
        stored = await self._write(store.hand_back, item.job_id, item.attempt, me=self.owner,
                                   launched=item.launched, deadline_s=10.0)
        kv(log, "info", "job handed back to the queue", job_id=item.job_id,
           attempt=item.attempt, launched=item.launched, stored=stored)

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
                    # a connection broken by a PostgreSQL restart is replaced, not reused
                    check=AsyncConnectionPool.check_connection,
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

    async def _write(self, operation: Callable[..., Awaitable[T]], *args: Any,
                     deadline_s: float | None = None, **kwargs: Any) -> T | None:
        """A status write, retried with backoff until it is stored (or `deadline_s` passed).

        A lost write would leave the row leased with nothing behind it: the job would
        wait for a lease expiry and run again. None: not stored before the deadline.
        """
        loop = asyncio.get_running_loop()
        end = None if deadline_s is None else loop.time() + deadline_s
        delay = 0.1
        while True:
            try:
                return await self._store(operation, *args, **kwargs)
            except (psycopg.Error, PoolTimeout, ServiceUnavailable) as exc:
                if end is not None and loop.time() + delay > end:
                    kv(log, "error", "status write not stored", operation=operation.__name__,
                       error=repr(exc))
                    return None
                kv(log, "warning", "status write failed; retrying",
                   operation=operation.__name__, retry_in_s=delay, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.retry_max_s)

    def _launcher(self, backend: str) -> JobLauncher:
        launcher = self._launchers.get(backend)
        if launcher is None:
            launcher = build_launcher(backend, self._settings)
            self._launchers[backend] = launcher
        return launcher


def _mark(item: Leased) -> None:
    item.launched = True
