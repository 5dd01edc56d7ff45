"""SQL for the lab console's read endpoints, every query scoped to one tenant.

Jobs are the tenant's by the same rule as `store.job_belongs_to`: the job names
the tenant, or names no tenant and belongs to one of the tenant's experiments.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from tracing.spanstore import INSERT_SQL

CONSOLE_SERVICE = "labstream-console"

# the job columns the console shows, plus its duration in seconds (NULL while running)
_JOB_SELECT = """
    SELECT j.id, j.rule_id, j.tenant_id, j.experiment_id, j.event_kind, j.backend, j.status,
           j.attempt, j.exit_code, j.error, j.trace_id, j.backend_ref, j.command,
           j.source_topic, j.source_partition, j.source_offset,
           j.created_at, j.started_at, j.finished_at,
           extract(epoch FROM j.finished_at - j.started_at)::float AS duration_s
      FROM public.jobs j
"""

_RECENT_EXPERIMENTS = """
    SELECT e.id, e.kind, e.status, e.title, e.submitted_by, e.priority, e.created_at,
           e.updated_at, e.completed_at,
           coalesce((SELECT s.trace_id FROM labstream.spans s
                      WHERE s.attributes ? 'lab.experiment.id'
                        AND s.attributes ->> 'lab.experiment.id' = e.id
                      ORDER BY s.start_time_unix_nano LIMIT 1),
                    (SELECT j.trace_id FROM public.jobs j
                      WHERE j.experiment_id = e.id AND j.trace_id IS NOT NULL
                      ORDER BY j.created_at LIMIT 1)) AS trace_id
      FROM public.experiments e
     WHERE e.tenant_id = %(tenant_id)s
     ORDER BY e.created_at DESC, e.id
     LIMIT %(limit)s
"""


async def recent_experiments(
    conn: AsyncConnection, *, tenant_id: str, limit: int
) -> list[dict[str, Any]]:
    """The tenant's newest experiments, each with its trace id and the jobs it triggered."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_RECENT_EXPERIMENTS, {"tenant_id": tenant_id, "limit": limit})
        experiments = await cursor.fetchall()
        ids = [row["id"] for row in experiments]
        await cursor.execute(
            _JOB_SELECT
            + """
             WHERE j.experiment_id = ANY(%(ids)s)
               AND (j.tenant_id = %(tenant_id)s OR j.tenant_id IS NULL)
             ORDER BY j.created_at, j.id
            """,
            {"ids": ids, "tenant_id": tenant_id},
        )
        jobs = await cursor.fetchall()
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_experiment.setdefault(job["experiment_id"], []).append(job)
    return [{**row, "jobs": by_experiment.get(row["id"], [])} for row in experiments]


async def get_job(conn: AsyncConnection, *, tenant_id: str, job_id: str) -> dict[str, Any] | None:
    """The job with its log line count, or None when it is not the tenant's."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            _JOB_SELECT
            + """
             WHERE j.id = %(job_id)s
               AND (j.tenant_id = %(tenant_id)s
                    OR (j.tenant_id IS NULL AND EXISTS (
                            SELECT 1 FROM public.experiments e
                             WHERE e.id = j.experiment_id AND e.tenant_id = %(tenant_id)s)))
            """,
            {"job_id": job_id, "tenant_id": tenant_id},
        )
        job = await cursor.fetchone()
        if job is None:
            return None
        await cursor.execute(
            "SELECT count(*) AS n FROM public.job_log_lines WHERE job_id = %s", (job_id,)
        )
        counted = await cursor.fetchone()
    return {**job, "log_line_count": counted["n"] if counted else 0}


async def insert_browser_span(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    """Store the page's own span (the trace's root); False when it was already stored."""
    resource = {"service.name": CONSOLE_SERVICE, "service.namespace": "labstream"}
    values = (
        row["trace_id"],
        row["span_id"],
        None,
        row["name"],
        "CLIENT",
        CONSOLE_SERVICE,
        row["start_time_unix_nano"],
        row["end_time_unix_nano"],
        row["status_code"],
        row["status_message"],
        json.dumps(row["attributes"]),
        "[]",
        "[]",
        json.dumps(resource),
        "labstream.console",
    )
    async with conn.transaction():
        cursor = await conn.execute(INSERT_SQL, values)
        return cursor.rowcount == 1
