"""Decide how a starting connector gets to "streaming with nothing missed".

`plan_start` is pure: it looks at the snapshot mode, the offsets row and which
slots exist, and returns one of four plans. The argument for why these plans
lose nothing on a crash at any moment is in docs/connector.md ("Crash safety").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connectors.source.exceptions import SlotLost
from connectors.source.offsets import ConnectorOffsets

PlanKind = Literal["fresh_snapshot", "fresh_stream", "resume", "handover"]


@dataclass(frozen=True)
class StartPlan:
    kind: PlanKind
    # fresh_*: the slot to create; resume: the slot to stream; handover: the old slot
    # (its confirmed_flush_lsn is still at or before the interrupted snapshot's point)
    slot: str
    # fresh_stream: the snapshot_state to record ('skipped' for never, 'done' for no_data)
    record_state: str = "done"
    reset_offsets: bool = False  # when_needed after a lost slot: start over
    warning: str | None = None


def plan_start(
    mode: str,
    offsets: ConnectorOffsets | None,
    configured_slot: str,
    slot_exists: dict[str, bool],
) -> StartPlan:
    """`slot_exists` answers for the configured slot and the one in `offsets`."""
    wants_snapshot = mode in ("initial", "when_needed")
    no_snapshot_state = "skipped" if mode == "never" else "done"
    if offsets is None:
        if not wants_snapshot:
            if slot_exists.get(configured_slot):
                return StartPlan("resume", configured_slot, record_state=no_snapshot_state)
            return StartPlan("fresh_stream", configured_slot, record_state=no_snapshot_state)
        if slot_exists.get(configured_slot):
            # a slot without offsets: a crash between creating the slot and writing the
            # row, or a slot made by hand. Its position is kept and streamed up to a
            # new snapshot, so nothing after it is lost either way.
            return StartPlan("handover", configured_slot)
        return StartPlan("fresh_snapshot", configured_slot)

    slot = offsets.slot_name
    if slot_exists.get(slot):
        if offsets.snapshot_complete or not wants_snapshot:
            return StartPlan("resume", slot, record_state=offsets.snapshot_state
                             if offsets.snapshot_complete else no_snapshot_state)
        return StartPlan("handover", slot)

    # the recorded slot is gone
    if mode == "when_needed":
        return StartPlan("fresh_snapshot", configured_slot, reset_offsets=True,
                         warning=f"replication slot {slot} is gone: taking a new snapshot "
                         "(changes between the old slot's position and now are only "
                         "visible as their final state)")
    if mode in ("never", "no_data"):
        return StartPlan("fresh_stream", configured_slot, record_state=no_snapshot_state,
                         reset_offsets=True,
                         warning=f"replication slot {slot} is gone: streaming from a new slot; "
                         "changes made while no slot existed were not captured")
    if offsets.snapshot_complete:
        raise SlotLost(
            f"replication slot {slot} was dropped; changes after "
            f"{_lsn(offsets.last_commit_lsn)} were not captured",
            hint="`labstream cdc reset --yes` and start again for a new snapshot, or run "
            "with LABSTREAM_CDC_SNAPSHOT_MODE=when_needed",
        )
    raise SlotLost(
        f"replication slot {slot} was dropped while the initial snapshot was in progress",
        hint="`labstream cdc reset --yes` and start again to take the snapshot from scratch",
    )


def _lsn(value: int | None) -> str:
    if value is None:
        return "its creation"
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
