"""The offset store: one row per connector in `labstream.connector_offsets`.

The slot's confirmed_flush_lsn is the streaming position; this row records
which slot is in use and the snapshot's state. The rule that makes crashes safe
(docs/connector.md): the slot is never confirmed past `consistent_point` before
`snapshot_state = 'done'` is committed here, and 'done' is written only after
Kafka acknowledged every snapshot record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from connectors.pgoutput import lsn_to_str, str_to_lsn

TABLE = "labstream.connector_offsets"
HINT_MIGRATE = "run `labstream db migrate` (migration 0003 creates labstream.connector_offsets)"


@dataclass(frozen=True)
class ConnectorOffsets:
    connector_name: str
    slot_name: str
    snapshot_state: str = "pending"
    consistent_point: int | None = None
    pending_slot: str | None = None
    retired_slot: str | None = None
    last_commit_lsn: int | None = None
    last_commit_at: datetime | None = None
    last_acked_at: datetime | None = None
    updated_at: datetime | None = None
    snapshot_progress: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshot_complete(self) -> bool:
        return self.snapshot_state in ("done", "skipped")


def _lsn(value: Any) -> int | None:
    return None if value is None else str_to_lsn(str(value))


def _lsn_text(value: int | None) -> str | None:
    return None if value is None else lsn_to_str(value)


class OffsetStore:
    """Reads and writes the connector's row; every write commits at once."""

    def __init__(self, conn: psycopg.Connection, connector_name: str) -> None:
        self.conn = conn
        self.connector_name = connector_name

    def load(self) -> ConnectorOffsets | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            try:
                cur.execute(f"SELECT * FROM {TABLE} WHERE connector_name = %s",
                            (self.connector_name,))
            except psycopg.errors.UndefinedTable as exc:
                self.conn.rollback()
                from connectors.source.exceptions import CdcConfigError

                raise CdcConfigError(f"{TABLE} does not exist", hint=HINT_MIGRATE) from exc
            row = cur.fetchone()
        self.conn.commit()
        if row is None:
            return None
        return ConnectorOffsets(
            connector_name=row["connector_name"],
            slot_name=row["slot_name"],
            snapshot_state=row["snapshot_state"],
            consistent_point=_lsn(row["consistent_point"]),
            pending_slot=row["pending_slot"],
            retired_slot=row["retired_slot"],
            last_commit_lsn=_lsn(row["last_commit_lsn"]),
            last_commit_at=row["last_commit_at"],
            last_acked_at=row["last_acked_at"],
            updated_at=row["updated_at"],
            snapshot_progress=row["snapshot_progress"] or {},
        )

    def save(self, offsets: ConnectorOffsets) -> None:
        """Insert or replace the whole row (state transitions)."""
        with self.conn.cursor() as cur:
            cur.execute(
                f"""INSERT INTO {TABLE} (connector_name, slot_name, snapshot_state,
                        snapshot_progress, consistent_point, pending_slot, retired_slot,
                        last_commit_lsn, last_commit_at, updated_at)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
                    ON CONFLICT (connector_name) DO UPDATE SET
                        slot_name = EXCLUDED.slot_name,
                        snapshot_state = EXCLUDED.snapshot_state,
                        snapshot_progress = EXCLUDED.snapshot_progress,
                        consistent_point = EXCLUDED.consistent_point,
                        pending_slot = EXCLUDED.pending_slot,
                        retired_slot = EXCLUDED.retired_slot,
                        last_commit_lsn = EXCLUDED.last_commit_lsn,
                        last_commit_at = EXCLUDED.last_commit_at,
                        updated_at = now()""",
                (
                    offsets.connector_name,
                    offsets.slot_name,
                    offsets.snapshot_state,
                    json.dumps(offsets.snapshot_progress),
                    _lsn_text(offsets.consistent_point),
                    offsets.pending_slot,
                    offsets.retired_slot,
                    _lsn_text(offsets.last_commit_lsn),
                    offsets.last_commit_at,
                ),
            )
        self.conn.commit()

    def record_progress(self, progress: dict[str, Any]) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                f"UPDATE {TABLE} SET snapshot_progress = %s, updated_at = now() "
                "WHERE connector_name = %s",
                (json.dumps(progress), self.connector_name),
            )
        self.conn.commit()

    def record_ack(self, commit_lsn: int, commit_at: datetime | None) -> None:
        """The newest transaction Kafka acknowledged (and all before it)."""
        with self.conn.cursor() as cur:
            cur.execute(
                f"""UPDATE {TABLE} SET last_commit_lsn = %s,
                        last_commit_at = COALESCE(%s, last_commit_at),
                        last_acked_at = now(), updated_at = now()
                    WHERE connector_name = %s""",
                (lsn_to_str(commit_lsn), commit_at, self.connector_name),
            )
        self.conn.commit()

    def delete(self) -> bool:
        with self.conn.cursor() as cur:
            cur.execute(f"DELETE FROM {TABLE} WHERE connector_name = %s", (self.connector_name,))
            deleted = cur.rowcount > 0
        self.conn.commit()
        return deleted
