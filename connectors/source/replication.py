"""The replication connection (psycopg2; psycopg 3 has no replication protocol).

`ReplicationSession` creates slots (with an exported snapshot when a snapshot
must be consistent with the slot), starts `pgoutput` streaming and sends
standby status feedback. Reads are non-blocking (`read_message`) so that one
loop can serve the producer, feedback and heartbeats between messages.
"""

from __future__ import annotations

import contextlib
import select
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from base.db import mask_url
from connectors.pgoutput import str_to_lsn
from connectors.source.catalog import SESSION_OPTIONS
from connectors.source.exceptions import CdcConfigError, SlotLost, SourceDisconnected

HINT_REPLICATION = "grant it with `ALTER ROLE <user> REPLICATION;` (as a superuser)"


@dataclass(frozen=True)
class CreatedSlot:
    name: str
    consistent_point: int
    snapshot_name: str | None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ReplicationSession:
    """One walsender connection: create a slot, or stream one."""

    def __init__(self, database_url: str, *, application_name: str = "labstream-cdc") -> None:
        self.database_url = database_url
        try:
            self.conn = psycopg2.connect(
                database_url,
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
                application_name=application_name,
                connect_timeout=5,
                # the text format connectors.pgtext parses, whatever the server's defaults
                options=SESSION_OPTIONS,
            )
        except psycopg2.OperationalError as exc:
            reason = _first_line(exc)
            if "replication" in reason and ("permission" in reason or "must be" in reason):
                raise CdcConfigError(
                    f"the database role may not open replication connections: {reason}",
                    hint=HINT_REPLICATION,
                ) from exc
            raise SourceDisconnected(
                f"cannot open a replication connection to {mask_url(database_url)}: {reason}",
                hint="start the stack (`labstream stack up`) or fix LABSTREAM_DATABASE_URL",
                retry_after=2.0,
            ) from exc
        self.cursor: Any = self.conn.cursor()
        self.streaming_slot: str | None = None

    def create_slot(self, name: str, *, export_snapshot: bool) -> CreatedSlot:
        """CREATE_REPLICATION_SLOT (PG15 syntax). With export, keep this session idle
        until the snapshot transaction has imported the snapshot."""
        mode = "export" if export_snapshot else "nothing"
        try:
            self.cursor.execute(
                f'CREATE_REPLICATION_SLOT "{name}" LOGICAL pgoutput (SNAPSHOT \'{mode}\')'
            )
        except psycopg2.errors.DuplicateObject as exc:
            raise CdcConfigError(
                f"replication slot {name} already exists",
                hint="another connector uses it, or run `labstream cdc reset --yes`",
            ) from exc
        except psycopg2.Error as exc:
            raise _classify(exc, name) from exc
        slot_name, consistent_point, snapshot_name, _plugin = self.cursor.fetchone()
        return CreatedSlot(slot_name, str_to_lsn(consistent_point), snapshot_name)

    def start(self, slot: str, publication: str, *, start_lsn: int = 0) -> None:
        """Stream `slot` from its confirmed_flush_lsn (start_lsn 0) with pgoutput v1."""
        try:
            self.cursor.start_replication(
                slot_name=slot,
                decode=False,
                start_lsn=start_lsn,
                status_interval=10,
                options={
                    "proto_version": "1",
                    "publication_names": publication,
                    "messages": "true",
                },
            )
        except psycopg2.Error as exc:
            raise _classify(exc, slot) from exc
        self.streaming_slot = slot

    def read(self) -> Any:
        """The next ReplicationMessage, or None when nothing is buffered."""
        try:
            return self.cursor.read_message()
        except psycopg2.Error as exc:
            raise _classify(exc, self.streaming_slot or "") from exc

    def wait(self, timeout_s: float) -> None:
        select.select([self.conn], [], [], max(0.0, timeout_s))

    @property
    def wal_end(self) -> int:
        return int(self.cursor.wal_end or 0)

    def feedback(
        self, flush_lsn: int, *, write_lsn: int | None = None, reply: bool = False
    ) -> None:
        """Standby status update: everything before `flush_lsn` is safely in Kafka."""
        try:
            self.cursor.send_feedback(
                write_lsn=max(write_lsn or 0, flush_lsn),
                flush_lsn=flush_lsn,
                apply_lsn=flush_lsn,
                reply=reply,
                force=True,
            )
        except psycopg2.Error as exc:
            raise _classify(exc, self.streaming_slot or "") from exc

    def close(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.conn.close()


def _classify(exc: psycopg2.Error, slot: str) -> Exception:
    reason = _first_line(exc)
    if isinstance(exc, psycopg2.errors.UndefinedObject) and "slot" in reason:
        return SlotLost(
            f"replication slot {slot} does not exist: {reason}",
            hint="see `labstream cdc status`; `labstream cdc reset --yes` starts over",
        )
    if isinstance(exc, psycopg2.errors.ObjectInUse):
        return SourceDisconnected(
            f"replication slot {slot} is in use by another process: {reason}",
            hint="stop the other connector using this slot (`labstream cdc status`)",
            retry_after=5.0,
        )
    if "publication" in reason and "does not exist" in reason:
        return CdcConfigError(
            f"slot {slot} cannot be decoded: {reason}",
            hint="if the publication exists, the slot is older than it (PostgreSQL cannot "
            "decode changes from before a publication was created): `labstream cdc reset "
            "--yes` and start again; otherwise let the connector create it "
            "(LABSTREAM_CDC_PUBLICATION_AUTOCREATE_MODE=filtered)",
        )
    if "wal_level" in reason:
        return CdcConfigError(
            f"logical decoding is not enabled: {reason}",
            hint="set wal_level = logical in postgresql.conf and restart PostgreSQL",
        )
    if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        return CdcConfigError(f"not allowed to replicate: {reason}", hint=HINT_REPLICATION)
    return SourceDisconnected(f"replication connection failed: {reason}", retry_after=2.0)
