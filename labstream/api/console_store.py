"""SQL for the lab console's read endpoints, every query scoped to one tenant.

Jobs are the tenant's by the same rule as `store.job_belongs_to`: the job names
the tenant, or names no tenant and belongs to one of the tenant's experiments.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from labstream.api import store
from labstream.api.console_model import ListQuery
from tracing.spanstore import INSERT_SQL, StoredSpan, fetch_linking_spans_async

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

_TRACE_OF_EXPERIMENT = """
           coalesce((SELECT s.trace_id FROM labstream.spans s
                      WHERE s.attributes ? 'lab.experiment.id'
                        AND s.attributes ->> 'lab.experiment.id' = e.id
                      ORDER BY s.start_time_unix_nano LIMIT 1),
                    (SELECT j.trace_id FROM public.jobs j
                      WHERE j.experiment_id = e.id AND j.trace_id IS NOT NULL
                      ORDER BY j.created_at LIMIT 1)) AS trace_id
"""

# Every filter is "parameter IS NULL OR condition", so one statement serves every
# combination; the keyset condition walks experiments_tenant_created_idx (0012).
_SEARCH_EXPERIMENTS = f"""
    SELECT e.id, e.kind, e.status, e.title, e.submitted_by, e.priority, e.created_at,
           e.updated_at, e.completed_at, {_TRACE_OF_EXPERIMENT}
      FROM public.experiments e
     WHERE e.tenant_id = %(tenant_id)s
       AND (%(status)s::text IS NULL OR e.status = %(status)s)
       AND (%(kind)s::text IS NULL OR e.kind = %(kind)s)
       AND (%(submitted_by)s::text IS NULL OR e.submitted_by = %(submitted_by)s)
       AND (%(since)s::timestamptz IS NULL OR e.created_at >= %(since)s)
       AND (%(until)s::timestamptz IS NULL OR e.created_at <= %(until)s)
       AND (%(before_at)s::timestamptz IS NULL
            OR (e.created_at, e.id) < (%(before_at)s, %(before_id)s::text))
       AND (%(rule)s::text IS NULL AND %(job_status)s::text IS NULL OR EXISTS (
              SELECT 1 FROM public.jobs j WHERE j.experiment_id = e.id
                 AND (%(rule)s::text IS NULL OR j.rule_id = %(rule)s)
                 AND (%(job_status)s::text IS NULL OR j.status = %(job_status)s)))
       AND (%(q)s::text IS NULL
            OR e.id = %(q)s
            OR e.title ILIKE %(q_like)s
            OR e.submitted_by = %(q)s
            OR EXISTS (SELECT 1 FROM public.jobs j WHERE j.experiment_id = e.id
                          AND (j.id = %(q)s OR j.trace_id = %(trace)s))
            OR EXISTS (SELECT 1 FROM labstream.spans s WHERE s.trace_id = %(trace)s
                          AND s.attributes ->> 'lab.experiment.id' = e.id))
     ORDER BY e.created_at DESC, e.id DESC
     LIMIT %(limit)s
"""

_SEARCH_JOBS = _JOB_SELECT + """
      JOIN public.experiments e ON e.id = j.experiment_id AND e.tenant_id = %(tenant_id)s
     WHERE (j.tenant_id = %(tenant_id)s OR j.tenant_id IS NULL)
       AND (%(status)s::text IS NULL OR j.status = %(status)s)
       AND (%(kind)s::text IS NULL OR e.kind = %(kind)s)
       AND (%(submitted_by)s::text IS NULL OR e.submitted_by = %(submitted_by)s)
       AND (%(rule)s::text IS NULL OR j.rule_id = %(rule)s)
       AND (%(job_status)s::text IS NULL OR j.status = %(job_status)s)
       AND (%(since)s::timestamptz IS NULL OR j.created_at >= %(since)s)
       AND (%(until)s::timestamptz IS NULL OR j.created_at <= %(until)s)
       AND (%(before_at)s::timestamptz IS NULL
            OR (j.created_at, j.id) < (%(before_at)s, %(before_id)s::text))
       AND (%(q)s::text IS NULL OR j.id = %(q)s OR j.experiment_id = %(q)s
            OR j.trace_id = %(trace)s OR j.rule_id = %(q)s)
     ORDER BY j.created_at DESC, j.id DESC
     LIMIT %(limit)s
"""


async def search_experiments(
    conn: AsyncConnection, *, tenant_id: str, query: ListQuery
) -> list[dict[str, Any]]:
    """The tenant's experiments matching `query` (one page + 1 row), each with its jobs."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_SEARCH_EXPERIMENTS, query.params(tenant_id))
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


async def search_jobs(
    conn: AsyncConnection, *, tenant_id: str, query: ListQuery
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_SEARCH_JOBS, query.params(tenant_id))
        return await cursor.fetchall()


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
        replayed_from = await _replayed_from(cursor, job.get("trace_id"))
    return {**job, "log_line_count": counted["n"] if counted else 0,
            "replayed_from": replayed_from}


async def _replayed_from(cursor: Any, trace_id: str | None) -> str | None:
    """The original record of a re-driven job: its trace starts with the replay's span,
    which names the record it copied (`labstream-replay-of`, replay/headers.py)."""
    if not trace_id:
        return None
    await cursor.execute(
        "SELECT attributes ->> 'labstream-replay-of' AS original FROM labstream.spans "
        "WHERE trace_id = %s AND attributes ? 'labstream-replay-of' LIMIT 1", (trace_id,))
    row = await cursor.fetchone()
    return row["original"] if row else None


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


async def linking_spans(
    conn: AsyncConnection, *, tenant_id: str, trace_id: str
) -> list[StoredSpan]:
    """Spans of the tenant's other traces that link into this one (replays, batches)."""
    spans = await fetch_linking_spans_async(conn, trace_id)
    owned = await _own_traces(conn, tenant_id, {span.trace_id for span in spans})
    return [span for span in spans if span.trace_id in owned]


async def _own_traces(conn: AsyncConnection, tenant_id: str, trace_ids: set[str]) -> set[str]:
    return {t for t in trace_ids
            if await store.trace_belongs_to(conn, tenant_id=tenant_id, trace_id=t)}


# one row per trace: how many spans, when it started, its root, whether it is a replay
_TRACE_SUMMARIES = """
    SELECT t.trace_id, count(s.span_id) AS span_count,
           min(s.start_time_unix_nano) AS start_time_unix_nano,
           (array_agg(s.name ORDER BY s.start_time_unix_nano)
                FILTER (WHERE s.parent_span_id IS NULL))[1] AS root_name,
           max(s.attributes ->> 'labstream-replay-of') AS replay_of,
           max(s.attributes ->> 'lab.replay.id') AS replay_id,
           coalesce(bool_or(s.status_code = 'ERROR'), false) AS has_error
      FROM unnest(%(ids)s::text[]) AS t(trace_id)
      LEFT JOIN labstream.spans s ON s.trace_id = t.trace_id
     GROUP BY t.trace_id
     ORDER BY min(s.start_time_unix_nano) NULLS LAST, t.trace_id
"""

_EXPERIMENT_TRACE_IDS = """
    SELECT DISTINCT trace_id FROM labstream.spans
     WHERE attributes ? 'lab.experiment.id' AND attributes ->> 'lab.experiment.id' = ANY(%(ids)s)
    UNION
    SELECT trace_id FROM public.jobs WHERE experiment_id = ANY(%(ids)s) AND trace_id IS NOT NULL
"""

_LINKING_TRACE_IDS = """
    SELECT DISTINCT trace_id FROM labstream.spans
     WHERE links @> %(link)s::jsonb AND trace_id <> %(trace_id)s
"""


async def trace_summaries(
    conn: AsyncConnection, *, tenant_id: str, trace_ids: set[str]
) -> list[dict[str, Any]]:
    owned = await _own_traces(conn, tenant_id, trace_ids)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_TRACE_SUMMARIES, {"ids": sorted(owned)})
        return await cursor.fetchall()


async def experiment_trace_ids(conn: AsyncConnection, experiment_ids: list[str]) -> set[str]:
    """Every trace that touched the experiments (submission, runs, jobs), and the replays
    that link into them."""
    cursor = await conn.execute(_EXPERIMENT_TRACE_IDS, {"ids": experiment_ids})
    found = {row[0] for row in await cursor.fetchall()}
    for trace_id in list(found):
        found |= await _linking_trace_ids(conn, trace_id)
    return found


async def _linking_trace_ids(conn: AsyncConnection, trace_id: str) -> set[str]:
    cursor = await conn.execute(_LINKING_TRACE_IDS, {
        "link": json.dumps([{"trace_id": trace_id}]), "trace_id": trace_id})
    return {row[0] for row in await cursor.fetchall()}


async def experiment_overview(
    conn: AsyncConnection, *, tenant_id: str, experiment_id: str
) -> dict[str, Any] | None:
    """The experiment page: the row, its runs, all its jobs, every trace that touched it."""
    experiment = await store.get_experiment(conn, tenant_id=tenant_id,
                                            experiment_id=experiment_id)
    if experiment is None:
        return None
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT id, instrument_id, status, started_at, finished_at, error, created_at, "
            "updated_at FROM public.runs WHERE experiment_id = %s ORDER BY created_at, id",
            (experiment_id,))
        runs = await cursor.fetchall()
        await cursor.execute(
            _JOB_SELECT + " WHERE j.experiment_id = %(id)s AND (j.tenant_id = %(tenant_id)s "
            "OR j.tenant_id IS NULL) ORDER BY j.created_at, j.id",
            {"id": experiment_id, "tenant_id": tenant_id})
        jobs = await cursor.fetchall()
        for job in jobs:
            job["replayed_from"] = await _replayed_from(cursor, job.get("trace_id"))
    trace_ids = await experiment_trace_ids(conn, [experiment_id])
    traces = await trace_summaries(conn, tenant_id=tenant_id, trace_ids=trace_ids)
    attempts = await _job_attempts(conn, experiment_id, {t["trace_id"] for t in traces})
    for job in jobs:
        job["attempts"] = attempts.get(job["id"], [])
    return {"experiment": experiment, "runs": runs, "jobs": jobs, "traces": traces}


# Every attempt of a job is a `job <rule>` span (the runner's, one per attempt, each in
# the trace of the record that launched it): the jobs row keeps only the last one.
_JOB_ATTEMPTS = """
    SELECT attributes ->> 'lab.job.id' AS job_id,
           (attributes ->> 'lab.job.attempt')::int AS attempt,
           attributes ->> 'lab.job.status' AS status,
           (attributes ->> 'lab.job.exit_code')::int AS exit_code, trace_id,
           start_time_unix_nano, duration_ns
      FROM labstream.spans
     WHERE attributes ? 'lab.experiment.id' AND attributes ->> 'lab.experiment.id' = %(id)s
       AND attributes ? 'lab.job.attempt' AND trace_id = ANY(%(traces)s)
     ORDER BY start_time_unix_nano
"""


async def _job_attempts(conn: AsyncConnection, experiment_id: str,
                        owned_traces: set[str]) -> dict[str, list[dict[str, Any]]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_JOB_ATTEMPTS, {"id": experiment_id, "traces": sorted(owned_traces)})
        rows = await cursor.fetchall()
    by_job: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_job.setdefault(row.pop("job_id"), []).append(row)
    return by_job


async def related_traces(
    conn: AsyncConnection, *, tenant_id: str, trace_id: str
) -> dict[str, Any]:
    """What a trace leads to: its jobs and experiments, replays that link into it, the
    traces it links to, and the other traces of its experiments (e.g. the run's job)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT DISTINCT attributes ->> 'lab.experiment.id' AS id FROM labstream.spans "
            "WHERE trace_id = %(t)s AND attributes ? 'lab.experiment.id' UNION "
            "SELECT experiment_id FROM public.jobs WHERE trace_id = %(t)s "
            "AND experiment_id IS NOT NULL", {"t": trace_id})
        experiments = sorted(row["id"] for row in await cursor.fetchall())
        await cursor.execute(
            "SELECT id, rule_id, status, attempt FROM public.jobs WHERE trace_id = %s "
            "AND (tenant_id = %s OR tenant_id IS NULL) ORDER BY created_at, id",
            (trace_id, tenant_id))
        jobs = await cursor.fetchall()
        await cursor.execute(
            "SELECT DISTINCT l ->> 'trace_id' AS id FROM labstream.spans, "
            "jsonb_array_elements(links) AS l WHERE trace_id = %s", (trace_id,))
        linked = {row["id"] for row in await cursor.fetchall()} - {trace_id}
    linking = await _linking_trace_ids(conn, trace_id)
    siblings = await experiment_trace_ids(conn, experiments) if experiments else set()
    summaries = await trace_summaries(conn, tenant_id=tenant_id,
                                      trace_ids=(linked | linking | siblings) - {trace_id})
    for summary in summaries:
        summary["relation"] = ("replay of this trace" if summary["trace_id"] in linking
                               else "linked from this trace" if summary["trace_id"] in linked
                               else "same experiment")
    return {"trace_id": trace_id, "experiments": experiments, "jobs": jobs,
            "traces": summaries}


async def record_consent(conn: AsyncConnection, *, tenant_id: str, job_id: str, record: str,
                         command: str, consented_by: str) -> int:
    """Store who agreed to a re-drive, committed before it starts; its id.

    Committed here, not in a `transaction()` block: the request's connection already
    has a transaction open (the job was read on it), where that would be a savepoint
    rolled back with the request if the re-drive then fails.
    """
    cursor = await conn.execute(
        "INSERT INTO labstream.console_replay_consents (tenant_id, job_id, record, command, "
        "consented_by) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (tenant_id, job_id, record, command, consented_by))
    row = await cursor.fetchone()
    await conn.commit()
    assert row is not None
    return int(row[0])


async def finish_consent(conn: AsyncConnection, consent_id: int, *, status: str,
                         replay_id: str | None = None, error: str | None = None) -> None:
    await conn.execute(
        "UPDATE labstream.console_replay_consents SET status = %s, replay_id = %s, "
        "error = %s WHERE id = %s", (status, replay_id, error, consent_id))
    await conn.commit()
