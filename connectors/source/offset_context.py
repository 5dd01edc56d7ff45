"""The offset context: where the connector is, and the only writer of that position.

Debezium's OffsetContext keeps the position a restart resumes from. Here the slot's
confirmed_flush_lsn is that position and `labstream.connector_offsets` says which slot
it is and how far the snapshot got; this class owns both the per-phase
`DeliveryTracker` (records acknowledged by Kafka -> the LSN safe to confirm) and every
state transition of the offsets row, so the crash-safety rule (docs/connector.md) is
written in one place: never confirm past the snapshot point before 'done' is durable.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connectors.source.offsets import ConnectorOffsets, OffsetStore
from connectors.source.producer import DeliveryTracker


class OffsetContext:
    def __init__(self, store: OffsetStore, connector_name: str) -> None:
        self.store = store
        self.name = connector_name
        self.tracker = DeliveryTracker()

    def new_tracker(self) -> DeliveryTracker:
        """Each phase (snapshot, streaming a slot) counts its own acknowledgements."""
        self.tracker = DeliveryTracker()
        return self.tracker

    # -- reading and plain writes -----------------------------------------------------------

    def load(self) -> ConnectorOffsets | None:
        return self.store.load()

    def save(self, offsets: ConnectorOffsets) -> None:
        self.store.save(offsets)

    def delete(self) -> None:
        self.store.delete()

    def record_progress(self, progress: dict[str, Any]) -> None:
        self.store.record_progress(progress)

    def record_ack(self, tracker: DeliveryTracker) -> None:
        """The newest transaction Kafka acknowledged (and all before it), for `cdc status`."""
        if tracker.confirmed_lsn is None:
            return
        commit_us = tracker.confirmed_commit_time_us
        commit_at = datetime.fromtimestamp(commit_us / 1e6, UTC) if commit_us else None
        self.store.record_ack(tracker.confirmed_lsn, commit_at)

    # -- state transitions ------------------------------------------------------------------

    def streaming_from_new_slot(self, slot: str, state: str, consistent_point: int) -> None:
        self.store.save(ConnectorOffsets(self.name, slot, state,
                                         consistent_point=consistent_point))

    def resuming(self, offsets: ConnectorOffsets | None, slot: str, state: str) -> None:
        if offsets is None or offsets.snapshot_state != state:
            base = offsets or ConnectorOffsets(self.name, slot)
            self.store.save(replace(base, snapshot_state=state))

    def snapshot_started(self, slot: str, consistent_point: int) -> None:
        """Durable BEFORE reading: a crash from here on is resumed by a hand-over."""
        self.store.save(ConnectorOffsets(self.name, slot, "running",
                                         consistent_point=consistent_point))

    def snapshot_done(self, slot: str, consistent_point: int,
                      retired_slot: str | None = None) -> None:
        """Only after Kafka acknowledged every snapshot record: now the slot may be
        confirmed past the snapshot point."""
        self.store.save(ConnectorOffsets(self.name, slot, "done",
                                         consistent_point=consistent_point,
                                         retired_slot=retired_slot,
                                         last_commit_lsn=consistent_point))

    def handover_started(self, offsets: ConnectorOffsets, old_slot: str, new_slot: str) -> None:
        self.store.save(replace(offsets, slot_name=old_slot, snapshot_state="running",
                                pending_slot=new_slot))

    def leftovers_dropped(self, offsets: ConnectorOffsets) -> ConnectorOffsets:
        cleaned = replace(offsets, pending_slot=None, retired_slot=None)
        self.store.save(cleaned)
        return cleaned
