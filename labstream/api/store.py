"""The lab API's SQL, every query scoped to one tenant."""

from __future__ import annotations

import json
import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from streams.jobs import reads as job_reads
from tracing.propagation import emit_db_trace_context_async
from tracing.spanstore import StoredSpan

API_SERVICE = "labstream-api"  # the service name `labstream api` exports its spans under
EXPERIMENT_COLUMNS = (
    "id, tenant_id, kind, status, title, submitted_by, protocol, priority, "
    "created_at, updated_at, completed_at"
)
JOB_COLUMNS = job_reads.API_JOB_COLUMNS


def new_experiment_id() -> str:
    return f"exp-{uuid.uuid4().hex[:16]}"


async def insert_experiment(
    conn: AsyncConnection, *, tenant_id: str, experiment: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Insert in one transaction that also carries the current trace context.

    Returns the row and whether the trace context was emitted.
    """
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        emitted = await emit_db_trace_context_async(cursor)
        await cursor.execute(
            f"""
            INSERT INTO public.experiments
                   (id, tenant_id, kind, title, submitted_by, protocol, priority)
            VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)
            RETURNING {EXPERIMENT_COLUMNS}
            """,
            (
                experiment["id"],
                tenant_id,
                experiment["kind"],
                experiment["title"],
                experiment["submitted_by"],
                json.dumps(experiment["protocol"]),
                experiment["priority"],
            ),
        )
        row = await cursor.fetchone()
    assert row is not None
    return row, emitted


async def get_experiment(
    conn: AsyncConnection, *, tenant_id: str, experiment_id: str
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {EXPERIMENT_COLUMNS} FROM public.experiments WHERE id = %s AND tenant_id = %s",
            (experiment_id, tenant_id),
        )
        return await cursor.fetchone()


async def experiment_jobs(conn: AsyncConnection, *, experiment_id: str) -> list[dict[str, Any]]:
    return await job_reads.experiment_jobs_async(conn, experiment_id)


# a job is the tenant's when it says so, or when its experiment is the tenant's
_JOB_OF_TENANT = """
    SELECT 1 FROM public.jobs j
     WHERE j.id = %(job_id)s
       AND (j.tenant_id = %(tenant_id)s
            OR (j.tenant_id IS NULL AND EXISTS (
                    SELECT 1 FROM public.experiments e
                     WHERE e.id = j.experiment_id AND e.tenant_id = %(tenant_id)s)))
"""


async def job_belongs_to(conn: AsyncConnection, *, tenant_id: str, job_id: str) -> bool:
    cursor = await conn.execute(_JOB_OF_TENANT, {"job_id": job_id, "tenant_id": tenant_id})
    return await cursor.fetchone() is not None


async def job_log_lines(
    conn: AsyncConnection, *, job_id: str, after_seq: int, limit: int
) -> list[dict[str, Any]]:
    return await job_reads.log_lines_after_async(conn, job_id, after_seq, limit)


# Who a trace belongs to, best evidence first: the API's record of its first
# authenticated writer; else the tenant of its earliest span that names one (a
# forged traceparent only adds spans *later* than the owner's: the API stamps its
# spans with its own clock); else the tenant of its first job.
_TRACE_OWNER = """
    SELECT tenant_id FROM (
        SELECT 1 AS rank, tenant_id FROM labstream.trace_owners WHERE trace_id = %(trace_id)s
        UNION ALL
        (SELECT 2, attributes ->> 'lab.tenant.id' FROM labstream.spans
          WHERE trace_id = %(trace_id)s AND attributes ? 'lab.tenant.id'
          ORDER BY start_time_unix_nano, span_id LIMIT 1)
        UNION ALL
        (SELECT 3, tenant_id FROM public.jobs
          WHERE trace_id = %(trace_id)s AND tenant_id IS NOT NULL
          ORDER BY created_at LIMIT 1)
    ) evidence ORDER BY rank LIMIT 1
"""


async def trace_owner(conn: AsyncConnection, *, trace_id: str) -> str | None:
    cursor = await conn.execute(_TRACE_OWNER, {"trace_id": trace_id})
    row = await cursor.fetchone()
    return row[0] if row else None


async def trace_belongs_to(conn: AsyncConnection, *, tenant_id: str, trace_id: str) -> bool:
    """The trace is the tenant's when the tenant started it (`trace_owner`).

    Spans another tenant planted in it with a forged traceparent change nothing:
    the owner still reads it (without those spans, see `own_spans`), they never do.
    """
    return await trace_owner(conn, trace_id=trace_id) == tenant_id


async def claim_trace(conn: AsyncConnection, *, trace_id: str, tenant_id: str,
                      claimed_by: str) -> str:
    """Record the tenant as the trace's owner unless someone else started it; the owner."""
    owner = await trace_owner(conn, trace_id=trace_id)
    if owner is not None and owner != tenant_id:
        return owner
    await conn.execute(
        "INSERT INTO labstream.trace_owners (trace_id, tenant_id, claimed_by) "
        "VALUES (%s, %s, %s) ON CONFLICT (trace_id) DO NOTHING",
        (trace_id, tenant_id, claimed_by))
    # two first writers at once: the row that won decides
    cursor = await conn.execute(
        "SELECT tenant_id FROM labstream.trace_owners WHERE trace_id = %s", (trace_id,))
    row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


def own_spans(spans: list[StoredSpan], tenant_id: str) -> list[StoredSpan]:
    """Leave out spans planted with a forged traceparent: those naming another tenant,
    and the API's own request spans that name none (every authenticated request's span
    names its tenant, so those are requests that failed authentication)."""
    return [span for span in spans
            if span.attributes.get("lab.tenant.id", tenant_id) == tenant_id
            and not (span.service_name == API_SERVICE and span.kind == "SERVER"
                     and "lab.tenant.id" not in span.attributes)]
