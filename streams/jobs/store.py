"""The `jobs` row of each job: claim (idempotently), take a slot, finish, reconcile.

Every write is one short statement or transaction on a pooled connection. A
session advisory lock per job (held by `liveness.LivenessLocks` for as long as
this worker handles the job) is how `reconcile()` on any worker tells a job
whose worker died (lock free) from one that is still running somewhere (lock held).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from streams.jobs.model import JobOutcome, JobRequest, JobStatus

# advisory lock namespaces (the two-int form): 'LJ' job liveness, 'LS' tenant slots
JOB_LOCK_CLASS = 0x4C4A
SLOT_LOCK_CLASS = 0x4C53
WORKER_LOST = "worker lost"

INSERT_JOB = """
INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, experiment_id, event_kind, command,
                         backend, status, trace_id, traceparent,
                         source_topic, source_partition, source_offset)
VALUES (%(id)s, %(job_key)s, %(rule_id)s, %(tenant_id)s, %(experiment_id)s, %(event_kind)s,
        %(command)s, %(backend)s, 'queued', %(trace_id)s, %(traceparent)s,
        %(source_topic)s, %(source_partition)s, %(source_offset)s)
ON CONFLICT (job_key) DO NOTHING
RETURNING id, attempt
"""

REQUEUE_JOB = """
UPDATE public.jobs
   SET status = 'queued', attempt = attempt + 1, exit_code = NULL, error = NULL,
       backend_ref = NULL, started_at = NULL, finished_at = NULL, created_at = now(),
       command = %(command)s, backend = %(backend)s, event_kind = %(event_kind)s,
       trace_id = %(trace_id)s, traceparent = %(traceparent)s,
       source_topic = %(source_topic)s, source_partition = %(source_partition)s,
       source_offset = %(source_offset)s
 WHERE id = %(id)s
RETURNING attempt
"""


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    status: JobStatus
    created: bool  # True: this caller queued the attempt and must run it


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:20]}"


def _params(request: JobRequest, job_id: str) -> dict[str, object]:
    return {
        "id": job_id,
        "job_key": request.job_key,
        "rule_id": request.rule_id,
        "tenant_id": request.tenant_id,
        "experiment_id": request.experiment_id,
        "event_kind": request.event_kind,
        "command": json.dumps(list(request.command)),
        "backend": request.backend,
        "trace_id": request.trace_id,
        "traceparent": request.traceparent,
        "source_topic": request.source_topic,
        "source_partition": request.source_partition,
        "source_offset": request.source_offset,
    }


async def claim(
    conn: psycopg.AsyncConnection,
    request: JobRequest,
    hold: Callable[[str], Awaitable[None]],
) -> Claim:
    """Insert the job, or decide about the existing row with this job_key.

    Queued/started: leave it. Succeeded: leave it unless `rerun_succeeded`.
    Failed, timed_out, launch_failed: queue a new attempt on the same row. When
    a run is queued, `hold(job_id)` takes its liveness lock before the commit, so
    no other session ever sees the queued row without its lock.
    """
    async with conn.transaction():
        params = _params(request, new_job_id())
        cursor = await conn.execute(INSERT_JOB, params)
        inserted = await cursor.fetchone()
        if inserted is not None:
            await hold(inserted[0])
            return Claim(inserted[0], inserted[1], JobStatus.QUEUED, created=True)
        cursor = await conn.execute(
            "SELECT id, attempt, status FROM public.jobs WHERE job_key = %s FOR UPDATE",
            (request.job_key,),
        )
        row = await cursor.fetchone()
        assert row is not None  # the conflicting row exists; rows are never deleted here
        job_id, attempt, status = row[0], row[1], JobStatus(row[2])
        rerun = status.may_run_again or (status is JobStatus.SUCCEEDED and request.rerun_succeeded)
        if not rerun:
            return Claim(job_id, attempt, status, created=False)
        cursor = await conn.execute(REQUEUE_JOB, {**params, "id": job_id})
        requeued = await cursor.fetchone()
        assert requeued is not None
        await hold(job_id)
        return Claim(job_id, requeued[0], JobStatus.QUEUED, created=True)


async def try_take_slot(conn: psycopg.AsyncConnection, job_id: str, request: JobRequest) -> bool:
    """Mark the job started if its tenant runs fewer than max_concurrency jobs of this rule.

    The count and the update happen under one advisory lock per (tenant, rule),
    so workers racing for the last slot cannot both take it.
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (SLOT_LOCK_CLASS, f"{request.tenant_id}\x1f{request.rule_id}"),
        )
        cursor = await conn.execute(
            "SELECT count(*) FROM public.jobs "
            "WHERE tenant_id = %s AND rule_id = %s AND status = 'started'",
            (request.tenant_id, request.rule_id),
        )
        running = await cursor.fetchone()
        if running is None or running[0] >= request.max_concurrency:
            return False
        await conn.execute(
            "UPDATE public.jobs SET status = 'started', started_at = clock_timestamp() "
            "WHERE id = %s",
            (job_id,),
        )
        return True


async def set_trace_id(conn: psycopg.AsyncConnection, job_id: str, trace_id: str) -> None:
    await conn.execute(
        "UPDATE public.jobs SET trace_id = %s WHERE id = %s AND trace_id IS NULL",
        (trace_id, job_id),
    )


async def set_backend_ref(conn: psycopg.AsyncConnection, job_id: str, backend_ref: str) -> None:
    await conn.execute(
        "UPDATE public.jobs SET backend_ref = %s WHERE id = %s", (backend_ref, job_id)
    )


async def finish(
    conn: psycopg.AsyncConnection,
    job_id: str,
    attempt: int,
    status: JobStatus,
    *,
    exit_code: int | None = None,
    error: str | None = None,
) -> None:
    """Record the end of `attempt` (a later attempt's row is never overwritten)."""
    await conn.execute(
        "UPDATE public.jobs SET status = %s, exit_code = %s, error = %s, "
        "finished_at = clock_timestamp() WHERE id = %s AND attempt = %s",
        (status.value, exit_code, error, job_id, attempt),
    )


async def next_log_seq(conn: psycopg.AsyncConnection, job_id: str) -> int:
    """Log lines of a new attempt continue after the previous attempts' lines."""
    cursor = await conn.execute(
        "SELECT coalesce(max(seq) + 1, 0) FROM public.job_log_lines WHERE job_id = %s", (job_id,)
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def load_outcome(conn: psycopg.AsyncConnection, job_id: str) -> JobOutcome | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT j.*, (SELECT count(*) FROM public.job_log_lines l WHERE l.job_id = j.id) "
            "AS log_lines FROM public.jobs j WHERE j.id = %s",
            (job_id,),
        )
        row = await cursor.fetchone()
    if row is None:
        return None
    return JobOutcome(
        job_id=row["id"],
        job_key=row["job_key"],
        status=JobStatus(row["status"]),
        attempt=row["attempt"],
        exit_code=row["exit_code"],
        error=row["error"],
        trace_id=row["trace_id"],
        backend_ref=row["backend_ref"],
        log_lines=row["log_lines"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


async def reconcile(
    conn: psycopg.AsyncConnection, *, tenant_id: str | None = None, rule_id: str | None = None
) -> list[str]:
    """Mark queued/started jobs whose worker is gone as failed ('worker lost').

    A job is orphaned when nobody holds its liveness lock: the session that
    claimed it ended (crash, kill -9, lost network) before it finished.
    `tenant_id`/`rule_id` limit it to one (tenant, rule)'s jobs.
    """
    async with conn.transaction():
        cursor = await conn.execute(
            "SELECT id FROM public.jobs WHERE status IN ('queued', 'started') "
            "AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s) "
            "AND (%(rule)s::text IS NULL OR rule_id = %(rule)s) "
            "FOR UPDATE SKIP LOCKED",
            {"tenant": tenant_id, "rule": rule_id},
        )
        candidates = [row[0] for row in await cursor.fetchall()]
        lost = []
        for job_id in candidates:
            cursor = await conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (JOB_LOCK_CLASS, job_id)
            )
            got = await cursor.fetchone()
            if got and got[0]:
                lost.append(job_id)
        if lost:
            await conn.execute(
                "UPDATE public.jobs SET status = 'failed', error = %s, "
                "finished_at = clock_timestamp() WHERE id = ANY(%s)",
                (WORKER_LOST, lost),
            )
    return lost
