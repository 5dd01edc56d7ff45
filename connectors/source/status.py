"""`labstream cdc status`: is the slot active, how far behind is it, is the snapshot done."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from connectors.pgoutput import lsn_to_str
from connectors.source import catalog
from connectors.source.config import CdcSettings
from connectors.source.offsets import OffsetStore


@dataclass(frozen=True)
class ConnectorStatus:
    connector: str
    slot: str
    slot_exists: bool
    slot_active: bool
    active_pid: int | None
    confirmed_flush_lsn: str | None
    current_wal_lsn: str
    lag_bytes: int | None
    lag_seconds: float | None  # now - commit time of the last acknowledged transaction
    snapshot_state: str
    snapshot_progress: dict[str, Any]
    last_acked_commit_lsn: str | None
    last_acked_commit_at: str | None
    updated_at: str | None
    publication: str
    publication_exists: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def connector_status(conn: psycopg.Connection, settings: CdcSettings) -> ConnectorStatus:
    offsets = OffsetStore(conn, settings.connector_name).load()
    slot_name = offsets.slot_name if offsets else settings.slot_name
    slot = catalog.slot_info(conn, slot_name)
    current = catalog.current_wal_lsn(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (settings.publication,))
        publication_exists = cur.fetchone() is not None
    conn.commit()
    confirmed = slot.confirmed_flush_lsn if slot else None
    lag_seconds = None
    if offsets and offsets.last_commit_at is not None:
        lag_seconds = round((datetime.now(UTC) - offsets.last_commit_at).total_seconds(), 3)
    return ConnectorStatus(
        connector=settings.connector_name,
        slot=slot_name,
        slot_exists=slot is not None,
        slot_active=bool(slot and slot.active),
        active_pid=slot.active_pid if slot else None,
        confirmed_flush_lsn=lsn_to_str(confirmed) if confirmed is not None else None,
        current_wal_lsn=lsn_to_str(current),
        lag_bytes=max(0, current - confirmed) if confirmed is not None else None,
        lag_seconds=lag_seconds,
        snapshot_state=offsets.snapshot_state if offsets else "none",
        snapshot_progress=offsets.snapshot_progress if offsets else {},
        last_acked_commit_lsn=lsn_to_str(offsets.last_commit_lsn)
        if offsets and offsets.last_commit_lsn is not None else None,
        last_acked_commit_at=offsets.last_commit_at.isoformat()
        if offsets and offsets.last_commit_at else None,
        updated_at=offsets.updated_at.isoformat() if offsets and offsets.updated_at else None,
        publication=settings.publication,
        publication_exists=publication_exists,
    )


def reset_connector(conn: psycopg.Connection, settings: CdcSettings) -> list[str]:
    """Drop the connector's slots (current, hand-over leftovers) and its offsets row."""
    store = OffsetStore(conn, settings.connector_name)
    offsets = store.load()
    names = {settings.slot_name}
    if offsets:
        names |= {n for n in (offsets.slot_name, offsets.pending_slot, offsets.retired_slot) if n}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name ~ %s",
            (f"^{settings.slot_name}_h[0-9a-f]{{8}}$",),
        )
        names |= {row[0] for row in cur.fetchall()}
    conn.commit()
    done = []
    for name in sorted(names):
        info = catalog.slot_info(conn, name)
        if info is None:
            continue
        if info.active:
            from connectors.source.exceptions import CdcError

            raise CdcError(
                f"replication slot {name} is in use (pid {info.active_pid})",
                hint="stop the running connector first",
            )
        catalog.drop_slot(conn, name)
        done.append(f"dropped slot {name}")
    if store.delete():
        done.append(f"deleted offsets of connector {settings.connector_name}")
    return done


def format_status(status: ConnectorStatus) -> str:
    lag = f"{status.lag_bytes} bytes" if status.lag_bytes is not None else "-"
    seconds = f"{status.lag_seconds:.1f} s" if status.lag_seconds is not None else "-"
    slot_state = ("active" if status.slot_active else "inactive") if status.slot_exists \
        else "MISSING"
    lines = [
        f"connector        {status.connector}",
        f"slot             {status.slot} ({slot_state}"
        + (f", pid {status.active_pid})" if status.active_pid else ")"),
        f"publication      {status.publication}"
        + ("" if status.publication_exists else " (MISSING)"),
        f"snapshot         {status.snapshot_state}{_progress(status.snapshot_progress)}",
        f"confirmed lsn    {status.confirmed_flush_lsn or '-'}",
        f"current wal lsn  {status.current_wal_lsn}",
        f"lag              {lag}, {seconds} since the last acknowledged commit",
        f"last acked       {status.last_acked_commit_lsn or '-'} at "
        f"{status.last_acked_commit_at or '-'}",
    ]
    return "\n".join(lines)


def _progress(progress: dict[str, Any]) -> str:
    """`, 120,000 rows (public.runs: 40,000)` while a snapshot runs (track_progress)."""
    if not progress or "rows" not in progress:
        return ""
    text = f", {progress['rows']:,} rows"
    current = progress.get("current_table")
    table = (progress.get("tables") or {}).get(current) if current else None
    if table and not table.get("done"):
        text += f" ({current}: {table['rows']:,})"
    return text
