"""The `jobs` table as a durable work queue with leases (see docs/jobs.md).

- `enqueue` writes (or re-queues) rows: a queued row belongs to nobody.
- `claim` leases queued rows to one runner (FOR UPDATE SKIP LOCKED), fair across
  tenants (round robin: the tenant served longest ago first, one job per tenant per
  turn) and within each (tenant, rule)'s max_concurrency, counting live leases only.
- `heartbeat` renews the runner's leases; `finish` records an attempt's end, only
  while the lease is still the caller's.
- `take_over` re-queues the next attempt of rows whose lease expired or whose owner's
  session is gone, after killing what is left of the abandoned attempt on this host.

Every change that makes work claimable sends NOTIFY `labstream_jobs`, so idle
runners wake on it instead of polling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from streams.jobs.model import (
    JobOutcome,
    JobRequest,
    JobStatus,
    idempotency_key_for,
    job_id_for,
)

# advisory lock namespaces (the two-int form): 'LO' runner owner, 'LS' tenant slots
OWNER_LOCK_CLASS = 0x4C4F
SLOT_LOCK_CLASS = 0x4C53
CHANNEL = "labstream_jobs"
NOTIFY = f"SELECT pg_notify('{CHANNEL}', '')"

INSERT_JOB = """
INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, experiment_id, event_kind, command,
                         backend, image, env, timeout_s, max_concurrency, status, trace_id,
                         traceparent, tracestate, idempotency_key,
                         source_topic, source_partition, source_offset)
VALUES (%(id)s, %(job_key)s, %(rule_id)s, %(tenant_id)s, %(experiment_id)s, %(event_kind)s,
        %(command)s, %(backend)s, %(image)s, %(env)s, %(timeout_s)s, %(max_concurrency)s,
        'queued', %(trace_id)s, %(traceparent)s, %(tracestate)s, %(idempotency_key)s,
        %(source_topic)s, %(source_partition)s, %(source_offset)s)
ON CONFLICT (job_key) DO NOTHING
RETURNING id, attempt
"""

REQUEUE_JOB = """
UPDATE public.jobs
   SET status = 'queued', attempt = attempt + 1, exit_code = NULL, error = NULL,
       backend_ref = NULL, started_at = NULL, finished_at = NULL, queued_at = now(),
       lease_owner = NULL, lease_expires_at = NULL, heartbeat_at = NULL,
       command = %(command)s, backend = %(backend)s, image = %(image)s, env = %(env)s,
       timeout_s = %(timeout_s)s, max_concurrency = %(max_concurrency)s,
       event_kind = %(event_kind)s, trace_id = %(trace_id)s, traceparent = %(traceparent)s,
       tracestate = %(tracestate)s, idempotency_key = %(idempotency_key)s,
       source_topic = %(source_topic)s, source_partition = %(source_partition)s,
       source_offset = %(source_offset)s
 WHERE id = %(id)s
RETURNING attempt
"""

# the queued head of each tenant first (turn 1), tenants served longest ago first
CLAIM_CANDIDATES = """
WITH turns AS (
    SELECT id, row_number() OVER (PARTITION BY coalesce(tenant_id, '')
                                  ORDER BY queued_at, id) AS turn
      FROM public.jobs WHERE status = 'queued'
)
SELECT j.id, coalesce(j.tenant_id, '') AS tenant, j.rule_id, j.max_concurrency
  FROM public.jobs j
  JOIN turns ON turns.id = j.id
  LEFT JOIN public.job_tenant_turns t ON t.tenant_id = coalesce(j.tenant_id, '')
 WHERE j.status = 'queued' AND turns.turn <= %(per_tenant)s
 ORDER BY turns.turn, t.last_claimed_at NULLS FIRST, j.queued_at, j.id
 LIMIT %(limit)s
   FOR UPDATE OF j SKIP LOCKED
"""

LIVE_LEASES = """
SELECT coalesce(tenant_id, ''), rule_id, count(*) FROM public.jobs
 WHERE status = 'started' AND lease_expires_at > now()
   AND (coalesce(tenant_id, ''), rule_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
 GROUP BY 1, 2
"""

LEASE = """
UPDATE public.jobs
   SET status = 'started', lease_owner = %(owner)s,
       lease_expires_at = now() + make_interval(secs => %(lease_s)s), heartbeat_at = now(),
       started_at = clock_timestamp(), finished_at = NULL, exit_code = NULL, error = NULL,
       backend_ref = NULL, process_host = NULL, process_pid = NULL, process_start = NULL
 WHERE id = ANY(%(ids)s)
RETURNING *
"""

STALE = """
SELECT id, attempt, lease_owner, process_host, process_pid, process_start, backend, backend_ref
  FROM public.jobs
 WHERE status = 'started' AND lease_owner IS DISTINCT FROM %(me)s
   AND (lease_expires_at IS NULL OR lease_expires_at < now()
        OR lease_owner = ANY(%(dead)s))
   AND (%(only)s::text[] IS NULL OR id = ANY(%(only)s))
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
"""


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    status: JobStatus
    created: bool  # True: this call queued an attempt


@dataclass(frozen=True)
class Stranded:
    """An attempt whose runner is gone: what is left of it is killed, the next is queued."""

    job_id: str
    attempt: int  # the abandoned attempt
    owner: str | None
    process_host: str | None
    process_pid: int | None
    process_start: int | None
    backend: str | None = None  # a container backend: its container/Job/task is stopped
    backend_ref: str | None = None


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
        "image": request.image,
        "env": json.dumps(dict(request.env)),
        "timeout_s": request.timeout_s,
        "max_concurrency": request.max_concurrency,
        "trace_id": request.trace_id,
        "traceparent": request.traceparent,
        "tracestate": request.tracestate,
        "idempotency_key": idempotency_key_for(request.job_key),
        "source_topic": request.source_topic,
        "source_partition": request.source_partition,
        "source_offset": request.source_offset,
    }


def request_from_row(row: dict[str, Any]) -> JobRequest:
    """The request a leased row stands for (raises InvalidJobRequest for a broken row)."""
    command = row.get("command") or []
    return JobRequest(
        job_key=row["job_key"], rule_id=row["rule_id"], tenant_id=row.get("tenant_id") or "",
        experiment_id=row.get("experiment_id"), backend=row["backend"], image=row.get("image"),
        command=tuple(command if isinstance(command, list) else json.loads(command)),
        env=row.get("env") or {}, timeout_s=row.get("timeout_s") or 3600.0,
        max_concurrency=row.get("max_concurrency") or 1,
        source_topic=row.get("source_topic"), source_partition=row.get("source_partition"),
        source_offset=row.get("source_offset"), traceparent=row.get("traceparent"),
        tracestate=row.get("tracestate"), event_kind=row.get("event_kind"))


async def enqueue(
    conn: psycopg.AsyncConnection, requests: Sequence[JobRequest], *, me: str,
    reap: Callable[[Stranded], None],
) -> list[Claim]:
    """Queue each request unless its job_key is queued, running, or succeeded already.

    Failed, timed_out, launch_failed: a new attempt on the same row. A `started` row
    whose runner is gone (a redelivered record of a stranded job): taken over, i.e. what
    is left of it is killed (`reap`) and the next attempt queued. One transaction.
    """
    claims = []
    async with conn.transaction():
        for request in requests:
            claims.append(await _enqueue_one(conn, request, me=me, reap=reap))
        if any(claim.created for claim in claims):
            await conn.execute(NOTIFY)
    return claims


async def _enqueue_one(conn: psycopg.AsyncConnection, request: JobRequest, *, me: str,
                       reap: Callable[[Stranded], None]) -> Claim:
    params = _params(request, job_id_for(request.job_key))
    inserted = await (await conn.execute(INSERT_JOB, params)).fetchone()
    if inserted is not None:
        return Claim(inserted[0], inserted[1], JobStatus.QUEUED, created=True)
    row = await (await conn.execute(
        "SELECT id, attempt, status FROM public.jobs WHERE job_key = %s FOR UPDATE",
        (request.job_key,))).fetchone()
    assert row is not None  # the conflicting row exists; rows are never deleted here
    job_id, attempt, status = row[0], row[1], JobStatus(row[2])
    if status is JobStatus.STARTED:
        taken = await take_over(conn, me=me, reap=reap, only=[job_id])
        if taken:
            return Claim(job_id, attempt + 1, JobStatus.QUEUED, created=True)
    rerun = status.may_run_again or (status is JobStatus.SUCCEEDED and request.rerun_succeeded)
    if not rerun:
        return Claim(job_id, attempt, status, created=False)
    requeued = await (await conn.execute(REQUEUE_JOB, {**params, "id": job_id})).fetchone()
    assert requeued is not None
    return Claim(job_id, requeued[0], JobStatus.QUEUED, created=True)


async def claim(
    conn: psycopg.AsyncConnection, *, me: str, capacity: int, lease_s: float,
) -> list[dict[str, Any]]:
    """Lease up to `capacity` queued jobs to runner `me`, fairly; returns their rows."""
    if capacity <= 0:
        return []
    async with conn.transaction():
        cursor = await conn.execute(CLAIM_CANDIDATES, {"per_tenant": capacity,
                                                        "limit": max(200, capacity * 4)})
        candidates = await cursor.fetchall()
        if not candidates:
            return []
        groups = sorted({(tenant, rule) for _, tenant, rule, _ in candidates})
        for tenant, rule in groups:  # sorted: two runners never wait on each other in a cycle
            await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                               (SLOT_LOCK_CLASS, f"{tenant}\x1f{rule}"))
        cursor = await conn.execute(LIVE_LEASES, ([g[0] for g in groups], [g[1] for g in groups]))
        running = {(tenant, rule): count for tenant, rule, count in await cursor.fetchall()}
        picked = pick(candidates, running, capacity)
        if not picked:
            return []
        async with conn.cursor(row_factory=dict_row) as leased:
            await leased.execute(LEASE, {"owner": me, "lease_s": lease_s, "ids": picked})
            rows = await leased.fetchall()
        tenants = sorted({tenant for job_id, tenant, _, _ in candidates if job_id in picked})
        await conn.execute(
            "INSERT INTO public.job_tenant_turns (tenant_id, last_claimed_at) "
            "SELECT unnest(%s::text[]), clock_timestamp() ON CONFLICT (tenant_id) "
            "DO UPDATE SET last_claimed_at = excluded.last_claimed_at", (tenants,))
    order = {job_id: index for index, job_id in enumerate(picked)}
    return sorted(rows, key=lambda row: order[row["id"]])


def pick(candidates: Sequence[tuple[str, str, str, int]], running: dict[tuple[str, str], int],
         capacity: int) -> list[str]:
    """Candidates in fair order, each while its (tenant, rule) is under max_concurrency."""
    taken = dict(running)
    picked: list[str] = []
    for job_id, tenant, rule, max_concurrency in candidates:
        if len(picked) >= capacity:
            break
        if taken.get((tenant, rule), 0) < max_concurrency:
            taken[(tenant, rule)] = taken.get((tenant, rule), 0) + 1
            picked.append(job_id)
    return picked


async def heartbeat(conn: psycopg.AsyncConnection, *, me: str, job_ids: Sequence[str],
                    lease_s: float) -> set[str]:
    """Renew `me`'s leases of `job_ids`; returns the ids still leased to `me`."""
    cursor = await conn.execute(
        "UPDATE public.jobs SET lease_expires_at = now() + make_interval(secs => %s), "
        "heartbeat_at = now() WHERE id = ANY(%s) AND lease_owner = %s AND status = 'started' "
        "RETURNING id", (lease_s, list(job_ids), me))
    return {row[0] for row in await cursor.fetchall()}


async def record_process(conn: psycopg.AsyncConnection, job_id: str, attempt: int, *, me: str,
                         backend_ref: str, host: str | None, pid: int | None,
                         start: int | None) -> bool:
    """The attempt's process, while the lease is `me`'s (False: the lease was lost)."""
    cursor = await conn.execute(
        "UPDATE public.jobs SET backend_ref = %s, process_host = %s, process_pid = %s, "
        "process_start = %s WHERE id = %s AND attempt = %s AND lease_owner = %s "
        "AND status = 'started'", (backend_ref, host, pid, start, job_id, attempt, me))
    return cursor.rowcount == 1


async def finish(
    conn: psycopg.AsyncConnection, job_id: str, attempt: int, status: JobStatus, *, me: str,
    exit_code: int | None = None, error: str | None = None,
) -> bool:
    """Record the end of `attempt` while `me` holds its lease (False: someone took it over)."""
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE public.jobs SET status = %s, exit_code = %s, error = %s, "
            "finished_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = %s AND attempt = %s AND lease_owner = %s AND status = 'started'",
            (status.value, exit_code, error, job_id, attempt, me))
        if cursor.rowcount == 1:
            await conn.execute(NOTIFY)  # a slot is free: runners waiting for it wake up
    return cursor.rowcount == 1


async def hand_back(conn: psycopg.AsyncConnection, job_id: str, attempt: int, *, me: str,
                    launched: bool) -> bool:
    """Return a leased job to the queue (a stopping runner); launched: the next attempt."""
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE public.jobs SET status = 'queued', attempt = attempt + %s, "
            "lease_owner = NULL, lease_expires_at = NULL, started_at = NULL "
            "WHERE id = %s AND attempt = %s AND lease_owner = %s AND status = 'started'",
            (1 if launched else 0, job_id, attempt, me))
        if cursor.rowcount == 1:
            await conn.execute(NOTIFY)
    return cursor.rowcount == 1


async def dead_owners(conn: psycopg.AsyncConnection, *, me: str) -> list[str]:
    """Owners of started rows whose runner session is gone (its owner lock is free).

    Call inside a transaction: the try-lock is transaction-scoped and ends with it.
    """
    cursor = await conn.execute(
        "SELECT DISTINCT lease_owner FROM public.jobs WHERE status = 'started' "
        "AND lease_owner IS NOT NULL AND lease_owner <> %s", (me,))
    dead = []
    for (owner,) in await cursor.fetchall():
        got = await (await conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                                        (OWNER_LOCK_CLASS, owner))).fetchone()
        if got and got[0]:
            dead.append(owner)
    return dead


async def take_over(
    conn: psycopg.AsyncConnection, *, me: str, reap: Callable[[Stranded], None],
    check_owners: bool = True, only: Sequence[str] | None = None, limit: int = 100,
) -> list[Stranded]:
    """Queue the next attempt of jobs whose lease expired or whose owner is gone.

    `reap` kills what is left of each abandoned attempt first (its process group on
    this host), so an attempt never runs next to the one that replaces it.
    """
    async with conn.transaction():
        dead = await dead_owners(conn, me=me) if check_owners else []
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(STALE, {"me": me, "dead": dead, "limit": limit,
                                         "only": list(only) if only is not None else None})
            rows = await cursor.fetchall()
        stranded = [Stranded(row["id"], row["attempt"], row["lease_owner"], row["process_host"],
                             row["process_pid"], row["process_start"], row["backend"],
                             row["backend_ref"]) for row in rows]
        for item in stranded:
            reap(item)
        if stranded:
            ids = [item.job_id for item in stranded]
            await conn.execute(
                "INSERT INTO public.job_log_lines (job_id, seq, stream, line) "
                "SELECT j.id, coalesce((SELECT max(seq) + 1 FROM public.job_log_lines l "
                "WHERE l.job_id = j.id), 0), 'stderr', 'labstream: attempt ' || j.attempt || "
                "' abandoned (its runner ' || coalesce(j.lease_owner, '?') || ' is gone); "
                "attempt ' || (j.attempt + 1) || ' queued' FROM public.jobs j WHERE j.id = ANY(%s)",
                (ids,))
            await conn.execute(
                "UPDATE public.jobs SET status = 'queued', attempt = attempt + 1, "
                "lease_owner = NULL, lease_expires_at = NULL, started_at = NULL "
                "WHERE id = ANY(%s)", (ids,))
            await conn.execute(NOTIFY)
    return stranded


async def set_trace_id(conn: psycopg.AsyncConnection, job_id: str, trace_id: str) -> None:
    await conn.execute(
        "UPDATE public.jobs SET trace_id = %s WHERE id = %s AND trace_id IS NULL",
        (trace_id, job_id),
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
