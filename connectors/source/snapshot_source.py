"""The snapshot source: read every captured row at a slot's snapshot point.

Two ways in (the coordinator's start-up plan picks one): a fresh snapshot on a new
slot, or a hand-over when an earlier snapshot was interrupted (stream the old slot
up to a new slot's snapshot point, snapshot there, continue on the new slot). Both
return the replication connection and slot the streaming source continues on. Why
neither loses a change when killed at any moment: docs/connector.md, "Crash safety".
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from base.logs import kv
from connectors.envelope import now_us
from connectors.pgoutput import lsn_to_str
from connectors.source import catalog
from connectors.source.context import SourceContext, Stopped
from connectors.source.events import OutEvent
from connectors.source.offsets import ConnectorOffsets
from connectors.source.replication import ReplicationSession
from connectors.source.snapshot import SnapshotReader, track_progress
from connectors.source.streaming_source import HANDOVER_PREFIX, StreamingSource

log = logging.getLogger(__name__)


class SnapshotSource:
    def __init__(self, ctx: SourceContext, streaming: StreamingSource) -> None:
        self.ctx = ctx
        self.streaming = streaming

    def fresh(self, slot: str) -> tuple[ReplicationSession, str]:
        ctx = self.ctx
        ctx.phase = "snapshot"
        repl = ctx.open_replication()
        created = repl.create_slot(slot, export_snapshot=True)
        ctx.offsets.snapshot_started(slot, created.consistent_point)
        kv(log, "info", "snapshot started", slot=slot,
           consistent_point=lsn_to_str(created.consistent_point))
        reader = SnapshotReader(ctx.database_url, created.snapshot_name or "")
        try:
            self.read(reader, created.consistent_point)
        finally:
            reader.close()
        ctx.offsets.snapshot_done(slot, created.consistent_point)
        kv(log, "info", "snapshot done", slot=slot, records=ctx.emitter.records)
        return repl, slot

    def handover(self, old_slot: str,
                 offsets: ConnectorOffsets | None) -> tuple[ReplicationSession, str]:
        """Snapshot again without losing what the old slot kept since its position:
        stream the old slot up to a new slot's snapshot point, snapshot there, continue
        on the new slot."""
        ctx = self.ctx
        s = ctx.settings
        ctx.phase = "handover"
        if offsets is None:
            info = catalog.slot_info(ctx.meta, old_slot)
            offsets = ConnectorOffsets(s.connector_name, old_slot, "running",
                                       consistent_point=info.confirmed_flush_lsn if info else None)
        new_slot = f"{s.slot_name}_h{secrets.token_hex(4)}"
        ctx.offsets.handover_started(offsets, old_slot, new_slot)
        new_repl = ctx.open_replication()
        created = new_repl.create_slot(new_slot, export_snapshot=True)
        reader = SnapshotReader(ctx.database_url, created.snapshot_name or "")  # imports now
        try:
            catalog.emit_wal_message(ctx.meta, HANDOVER_PREFIX, new_slot)
            kv(log, "info", "snapshot hand-over: streaming the old slot up to the new snapshot",
               old_slot=old_slot, new_slot=new_slot,
               snapshot_point=lsn_to_str(created.consistent_point))
            old_repl = ctx.open_replication()
            self.streaming.stream(old_repl, old_slot, stop_at=created.consistent_point,
                                  confirm=False)
            ctx.close_replication(old_repl)
            ctx.producer.flush_all(ctx.offsets.tracker)
            ctx.phase = "snapshot"
            self.read(reader, created.consistent_point)
        finally:
            reader.close()
        ctx.offsets.snapshot_done(new_slot, created.consistent_point, retired_slot=old_slot)
        catalog.drop_slot(ctx.meta, old_slot)
        ctx.offsets.snapshot_done(new_slot, created.consistent_point)
        kv(log, "info", "snapshot hand-over done", slot=new_slot, records=ctx.emitter.records)
        return new_repl, new_slot

    def read(self, reader: SnapshotReader, consistent_point: int) -> None:
        ctx = self.ctx
        producer = ctx.producer
        tracker = ctx.offsets.new_tracker()
        ticket = tracker.open(0)
        read_time = now_us()
        tx_id = reader.tx_id
        schemas: dict[int, Any] = {}
        # track_progress logs and records the progress (per table, every N rows)
        rows = track_progress(reader.read_all(ctx.settings.table_filter),
                              ctx.offsets.record_progress)
        for count, row in enumerate(rows, 1):
            if ctx.stopping:
                raise Stopped
            table = schemas.get(row.table.oid)
            if table is None:
                table = schemas[row.table.oid] = ctx.on_relation(row.relation)
            event = ctx.builder.snapshot_event(table, row.values, row.marker,
                                               consistent_point, read_time, tx_id)
            ctx.emitter.emit(OutEvent(event, None), ticket)
            if count & 1023 == 0:
                producer.poll(0)
                tracker.advance()
        ticket.sealed = True
        producer.flush_all(tracker)
