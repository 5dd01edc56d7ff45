"""Read-only queries over `public.jobs` and `public.job_log_lines`, for the layers above.

`streams.jobs` owns these tables: `store.py` writes them for the runner, `logsink.py`
writes log lines, and this module is where every other package (explain, replay,
the lab API, the demo) reads them. No SQL over jobs lives anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row


def experiment_of_trace(conn: psycopg.Connection, trace_id: str) -> str | None:
    """The experiment of a job that ran in `trace_id`, if any."""
    row = conn.execute("SELECT experiment_id FROM public.jobs WHERE trace_id = %s AND "
                       "experiment_id IS NOT NULL LIMIT 1", (trace_id,)).fetchone()
    return row[0] if row else None


def jobs_matching(conn: psycopg.Connection, experiment_id: str | None,
                  trace_ids: Iterable[str], job_keys: Iterable[str]) -> list[dict[str, Any]]:
    """Job rows (with `log_line_count`) of an experiment, of traces or of job keys, oldest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            "SELECT j.*, (SELECT count(*) FROM public.job_log_lines l WHERE l.job_id = j.id) "
            "AS log_line_count FROM public.jobs j WHERE j.experiment_id = %s "
            "OR j.trace_id = ANY(%s) OR j.job_key = ANY(%s) ORDER BY j.created_at, j.id",
            (experiment_id, list(trace_ids), list(job_keys)))
        return cursor.fetchall()


def log_tail(conn: psycopg.Connection, job_id: str, lines: int) -> list[tuple[Any, ...]]:
    """The newest `lines` log lines of a job as (seq, stream, line, trace_id), oldest first."""
    rows = conn.execute("SELECT seq, stream, line, trace_id FROM public.job_log_lines "
                        "WHERE job_id = %s ORDER BY seq DESC LIMIT %s", (job_id, lines)).fetchall()
    return list(reversed(rows))


def log_trace_ids(conn: psycopg.Connection, job_id: str) -> list[str]:
    """The trace ids the job's log lines carry (a job may log in a trace of its own)."""
    rows = conn.execute("SELECT DISTINCT trace_id FROM public.job_log_lines WHERE "
                        "job_id = %s AND trace_id IS NOT NULL", (job_id,)).fetchall()
    return sorted(row[0] for row in rows)


def statuses_by_key(conn: psycopg.Connection, job_keys: list[str]) -> dict[str, str]:
    """`job_key -> status` of the jobs that exist (what the runner compares on redelivery)."""
    if not job_keys:
        return {}
    rows = conn.execute("SELECT job_key, status FROM public.jobs WHERE job_key = ANY(%s)",
                        (job_keys,)).fetchall()
    return {key: status for key, status in rows}


def log_lines_since(conn: psycopg.Connection, since_epoch_s: float) -> int:
    """How many job log lines were written since a moment (the demo's summary)."""
    row = conn.execute("SELECT count(*) FROM public.job_log_lines "
                       "WHERE logged_at >= to_timestamp(%s)", (since_epoch_s,)).fetchone()
    return int(row[0]) if row else 0


# -- async reads, for the lab API ----------------------------------------------------------

API_JOB_COLUMNS = (
    "id, rule_id, tenant_id, experiment_id, event_kind, backend, status, attempt, exit_code, "
    "error, trace_id, created_at, started_at, finished_at"
)


async def experiment_jobs_async(conn: psycopg.AsyncConnection,
                                experiment_id: str) -> list[dict[str, Any]]:
    """The jobs of one experiment (the API's columns), oldest first."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(f"SELECT {API_JOB_COLUMNS} FROM public.jobs WHERE experiment_id = %s "
                             "ORDER BY created_at", (experiment_id,))
        return await cursor.fetchall()


async def log_lines_after_async(conn: psycopg.AsyncConnection, job_id: str, after_seq: int,
                                limit: int) -> list[dict[str, Any]]:
    """A job's log lines after `after_seq`, in order, at most `limit` (the API's log paging)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute("SELECT seq, stream, line, trace_id, logged_at FROM "
                             "public.job_log_lines WHERE job_id = %s AND seq > %s "
                             "ORDER BY seq LIMIT %s", (job_id, after_seq, limit))
        return await cursor.fetchall()
