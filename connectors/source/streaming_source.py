"""The streaming source: pgoutput changes from a slot to Kafka, confirming behind acks.

`stream()` reads the slot, assembles transactions, emits their records and confirms
to PostgreSQL only the end LSN of the newest transaction that Kafka acknowledged
with everything before it (OffsetContext's tracker). With `stop_at` it is the
hand-over's catch-up: read the old slot up to a new slot's snapshot point, confirm
nothing.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from base.logs import kv
from connectors.pgoutput import Begin, Message, decode_message, lsn_to_str
from connectors.source import catalog
from connectors.source.context import SourceContext
from connectors.source.events import OutEvent
from connectors.source.heartbeat import HEARTBEAT_PREFIX, HeartbeatTimer, heartbeat_event
from connectors.source.producer import DeliveryTracker
from connectors.source.replication import ReplicationSession
from connectors.source.transactions import StandaloneMessage, TransactionAssembler, TxBatch

log = logging.getLogger(__name__)

STREAMING_GC_THRESHOLD = 20_000  # gen-0 allocations between collections while streaming

HANDOVER_PREFIX = "labstream-handover"


class StreamingSource:
    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx

    def stream(self, repl: ReplicationSession, slot: str, *, stop_at: int | None = None,
               confirm: bool = True) -> None:
        ctx = self.ctx
        s = ctx.settings
        producer = ctx.producer
        emitter = ctx.emitter
        repl.start(slot, s.publication)
        ctx.repl = repl
        ctx.phase = "streaming" if stop_at is None else "handover"
        tracker = ctx.offsets.new_tracker()
        assembler = TransactionAssembler(self._on_batch, ctx.on_relation, self._on_standalone,
                                         max_buffered=s.tx_buffer_max_records)
        heartbeat = HeartbeatTimer(s.heartbeat_interval_ms if confirm else 0)
        feedback_every = s.feedback_interval_ms / 1000.0
        offsets_every = s.offsets_interval_ms / 1000.0
        next_feedback = next_offsets = time.monotonic()
        recorded_lsn = None
        got_data = False
        count = 0
        if stop_at is None:
            kv(log, "info", "streaming", slot=slot)
        # long-lived start-up objects out of the collector's way: fewer, shorter pauses
        # (the coordinator unfreezes when the session ends, so nothing is kept for good)
        gc.collect()
        gc.freeze()
        # a 1,000-row transaction keeps thousands of young containers alive until it is
        # emitted, so the default gen-0 threshold (700) ran a collection every ~100 rows
        # (~6 % of the CPU in a profile); the hot path makes no cycles worth chasing sooner
        gc.set_threshold(STREAMING_GC_THRESHOLD, *gc.get_threshold()[1:])
        while not ctx.stopping:
            msg = repl.read()
            if msg is not None:
                decoded = decode_message(msg.payload)
                if stop_at is not None and _reached(decoded, stop_at):
                    break
                assembler.feed(decoded, msg.data_start)
                got_data = True
                count += 1
                if count & 255:
                    continue
            now = time.monotonic()
            emitter.new_window()
            producer.poll(0)
            if now >= next_feedback:
                next_feedback = now + feedback_every
                if tracker.advance() and confirm:
                    repl.feedback(tracker.confirmed_lsn or 0, write_lsn=repl.wal_end)
                if confirm and now >= next_offsets and tracker.confirmed_lsn != recorded_lsn:
                    next_offsets = now + offsets_every
                    recorded_lsn = tracker.confirmed_lsn
                    ctx.offsets.record_ack(tracker)
            if msg is not None:
                continue
            if got_data:
                heartbeat.activity(now)
                got_data = False
            elif heartbeat.due(now) and not assembler.in_transaction:
                self._heartbeat(tracker)
                heartbeat.activity(now)
            repl.wait(min(feedback_every, heartbeat.seconds_left(now), 0.05))
        if confirm:
            self._finish(repl, tracker)
        ctx.repl = None

    def _finish(self, repl: ReplicationSession, tracker: DeliveryTracker) -> None:
        """Clean stop: flush the producer, confirm what Kafka has, record it."""
        ctx = self.ctx
        ctx.phase = "stopping"
        ctx.emitter.new_window()  # the last window's span ends
        remaining = ctx.producer.flush(30)
        tracker.advance()
        if tracker.confirmed_lsn:
            repl.feedback(tracker.confirmed_lsn)
            ctx.offsets.record_ack(tracker)
        kv(log, "info", "stopped", confirmed_lsn=lsn_to_str(tracker.confirmed_lsn or 0),
           unacknowledged=remaining)

    # -- callbacks from the assembler -----------------------------------------------------

    def _on_batch(self, batch: TxBatch) -> None:
        ctx = self.ctx
        ticket = ctx.offsets.tracker.open(batch.end_lsn if batch.final else 0,
                                          batch.commit_time_us)
        emit = ctx.emitter.emit
        for out in ctx.builder.batch_events(batch):
            emit(out, ticket)
        ticket.sealed = True
        ctx.emitter.end_batch()  # the batch's trace span ends with its last ack

    def _on_standalone(self, standalone: StandaloneMessage) -> None:
        ctx = self.ctx
        ticket = ctx.offsets.tracker.open(standalone.lsn)
        out = ctx.builder.standalone_message(standalone.message, standalone.lsn)
        if out is not None:
            ctx.emitter.emit(out, ticket)
        ticket.sealed = True

    def _heartbeat(self, tracker: DeliveryTracker) -> None:
        ctx = self.ctx
        s = ctx.settings
        ticket = tracker.open(0)
        ctx.emitter.emit(OutEvent(heartbeat_event(s.heartbeat_topic, s.topic_prefix), None),
                         ticket)
        ticket.sealed = True
        catalog.emit_wal_message(ctx.meta, HEARTBEAT_PREFIX, str(int(time.time() * 1000)))


def _reached(decoded: Any, stop_at: int) -> bool:
    """Hand-over: has the old slot's stream reached the new slot's snapshot point?"""
    if isinstance(decoded, Begin):
        return decoded.final_lsn >= stop_at
    if isinstance(decoded, Message) and not decoded.transactional:
        return decoded.lsn >= stop_at
    return False
