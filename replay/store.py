"""Replays recorded in the lab database (`labstream.replays`, migration 0006).

A re-drive writes its progress here in small batches and only after the
producer acknowledged the batch: `progress` maps each source partition
(`topic/partition`) to the last offset whose replay is durable in Kafka, so a
resume starts right after it. While a replay runs, its process holds a
session advisory lock on the replay id: a second `resume` of the same replay
is refused instead of producing everything twice.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from replay.exceptions import ReplayNotFound, ReplayStateError

# pg_advisory_lock(classid, objid): "rply" in ASCII, then a hash of the replay id.
ADVISORY_LOCK_CLASS = 0x72706C79

_COLUMNS = (
    "id, created_at, updated_at, selection, plan, mode, target, options, status, total, done, "
    "matched, undecodable, produced, progress, target_positions, finished_at, error"
)


@dataclass
class ReplayRow:
    id: str
    mode: str
    selection: dict[str, Any]
    plan: list[list[Any]] = field(default_factory=list)
    target: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    total: int | None = None
    done: int = 0
    matched: int = 0
    undecodable: int = 0
    produced: int = 0
    progress: dict[str, int] = field(default_factory=dict)
    target_positions: dict[str, int] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> ReplayRow:
        return cls(**{name: row[name] for name in _COLUMNS.split(", ")})

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _COLUMNS.split(", ")}
        for name in ("created_at", "updated_at", "finished_at"):
            data[name] = data[name].isoformat() if data[name] else None
        return data


def new_replay_id(now: datetime | None = None) -> str:
    """`rp-20261125T141502-3f9a1c`: sortable by time, unique enough to use as a header."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"rp-{moment}-{secrets.token_hex(3)}"


def create(conn: psycopg.Connection, row: ReplayRow) -> ReplayRow:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"""INSERT INTO labstream.replays
                   (id, selection, plan, mode, target, options, status, total, target_positions)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (
                row.id,
                json.dumps(row.selection),
                json.dumps(row.plan),
                row.mode,
                row.target,
                json.dumps(row.options),
                row.status,
                row.total,
                json.dumps(row.target_positions),
            ),
        )
        created = cursor.fetchone()
    conn.commit()
    assert created is not None
    return ReplayRow.from_db(created)


def record_progress(conn: psycopg.Connection, row: ReplayRow) -> None:
    """Persist counters and positions; call only after the batch was acknowledged."""
    conn.execute(
        """UPDATE labstream.replays
              SET done = %s, matched = %s, undecodable = %s, produced = %s,
                  progress = %s, target_positions = %s, updated_at = now()
            WHERE id = %s""",
        (
            row.done,
            row.matched,
            row.undecodable,
            row.produced,
            json.dumps(row.progress),
            json.dumps(row.target_positions),
            row.id,
        ),
    )
    conn.commit()


def finish(conn: psycopg.Connection, row: ReplayRow, status: str, error: str | None = None) -> None:
    row.status, row.error = status, error
    conn.execute(
        """UPDATE labstream.replays
              SET status = %s, error = %s, updated_at = now(),
                  finished_at = CASE WHEN %s IN ('succeeded', 'failed') THEN now() END
            WHERE id = %s""",
        (status, error, status, row.id),
    )
    conn.commit()


def mark_running(conn: psycopg.Connection, row: ReplayRow) -> None:
    row.status = "running"
    conn.execute(
        "UPDATE labstream.replays SET status = 'running', error = NULL, updated_at = now() "
        "WHERE id = %s",
        (row.id,),
    )
    conn.commit()


def get(conn: psycopg.Connection, replay_id: str) -> ReplayRow:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(f"SELECT {_COLUMNS} FROM labstream.replays WHERE id = %s", (replay_id,))
        found = cursor.fetchone()
    conn.commit()
    if found is None:
        raise ReplayNotFound(
            f"no replay {replay_id!r} is recorded",
            hint="list recorded replays with `labstream replay history`",
        )
    return ReplayRow.from_db(found)


def history(conn: psycopg.Connection, limit: int = 20) -> list[ReplayRow]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"SELECT {_COLUMNS} FROM labstream.replays ORDER BY created_at DESC LIMIT %s", (limit,)
        )
        rows = cursor.fetchall()
    conn.commit()
    return [ReplayRow.from_db(row) for row in rows]


def lock(conn: psycopg.Connection, replay_id: str) -> None:
    """Hold the replay's session lock (released when the process and its connection end)."""
    acquired = conn.execute(
        "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (ADVISORY_LOCK_CLASS, replay_id)
    ).fetchone()
    conn.commit()
    if not acquired or not acquired[0]:
        raise ReplayStateError(
            f"replay {replay_id} is being run by another process right now",
            hint="wait for it to finish, or stop that process, then resume",
        )
