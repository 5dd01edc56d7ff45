"""The CDC connector: start-up plan, snapshot, hand-over, streaming, shutdown.

`CdcConnector(settings).run()` runs until `stop()` (SIGTERM/SIGINT in the CLI),
reconnecting with backoff when PostgreSQL or Kafka goes away. Every path keeps
one rule (docs/connector.md, "Crash safety"): a slot is confirmed only up to
the end of the newest transaction whose records, and all earlier ones, Kafka
acknowledged, and never past its snapshot point before the snapshot is 'done'.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import secrets
import socket
import threading
import time
from dataclasses import replace
from typing import Any

import psycopg

from base.db import connect
from base.errors import LabstreamError, RetryableError, ServiceUnavailable
from base.logs import kv
from base.settings import service_settings
from connectors.envelope import now_us
from connectors.pgoutput import Begin, Message, decode_message, lsn_to_str
from connectors.serde import EventSerializer
from connectors.source import catalog
from connectors.source.classify import classify
from connectors.source.config import CdcSettings
from connectors.source.emitter import Emitter
from connectors.source.events import EventBuilder, OutEvent
from connectors.source.exceptions import ConnectorGaveUp, SourceDisconnected
from connectors.source.heartbeat import HEARTBEAT_PREFIX, HeartbeatTimer, heartbeat_event
from connectors.source.offsets import ConnectorOffsets, OffsetStore
from connectors.source.oversized import OversizedPolicy
from connectors.source.producer import ChangeProducer, DeliveryTracker
from connectors.source.replication import ReplicationSession
from connectors.source.snapshot import SnapshotReader
from connectors.source.startup import plan_start
from connectors.source.transactions import StandaloneMessage, TransactionAssembler, TxBatch

log = logging.getLogger(__name__)

HANDOVER_PREFIX = "labstream-handover"


class Stopped(Exception):
    """stop() was called: leave the current phase cleanly."""


class CdcConnector:
    def __init__(
        self,
        settings: CdcSettings | None = None,
        *,
        database_url: str | None = None,
        bootstrap_servers: str | None = None,
        serializer: EventSerializer | None = None,
    ) -> None:
        self.settings = settings or CdcSettings()
        services = service_settings()
        self.database_url = database_url or services.database_url
        self.bootstrap = bootstrap_servers or services.kafka_bootstrap_servers
        self._serializer = serializer
        self._stop = threading.Event()
        self.phase = "starting"
        self._repl: ReplicationSession | None = None
        self._repls: list[ReplicationSession] = []
        self._meta: psycopg.Connection | Any = None
        self._producer: ChangeProducer | None = None
        self._tracker = DeliveryTracker()
        self._topics: set[str] = set()
        self._last_keepalive = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Sessions until stop(): transient errors back off and retry without limit, a
        permanent one (classify.py) ends the run after `permanent_error_attempts`."""
        delay = 0.5
        permanent = 0
        while not self.stopping:
            started = time.monotonic()
            try:
                self._session()
                return
            except Stopped:
                return
            except Exception as exc:
                verdict = classify(exc)
                if verdict is None:
                    raise  # a bug, not a condition: let it show
                if not verdict.transient:
                    if _is_own_permanent(exc):
                        raise  # config/slot errors carry their own exit code and fix
                    permanent += 1
                    if permanent >= self.settings.permanent_error_attempts:
                        kv(log, "error", "giving up", cause=verdict.cause, fix=verdict.fix,
                           attempts=permanent)
                        raise ConnectorGaveUp(verdict.line()) from None
                else:
                    permanent = 0
                if time.monotonic() - started > 30:
                    delay = 0.5
                kv(log, "warning", "connection lost, reconnecting" if verdict.transient
                   else "permanent error, retrying a bounded number of times", phase=self.phase,
                   error=verdict.line(), retry_in_s=round(delay, 1))
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_backoff_max_s)
            finally:
                self._close()

    def _close(self) -> None:
        for repl in self._repls:
            repl.close()
        self._repls = []
        self._repl = None
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(5)
            self._producer.close()
            self._producer = None
        # _stream froze the heap (gc.freeze); let this session's cycles be collected
        gc.unfreeze()
        if self._meta is not None:
            with contextlib.suppress(Exception):
                self._meta.close()
            self._meta = None

    def _open_replication(self) -> ReplicationSession:
        repl = ReplicationSession(self.database_url)
        self._repls.append(repl)
        return repl

    # -- one session: from connect to stop or failure ---------------------------------------

    def _session(self) -> None:
        s = self.settings
        self.phase = "connecting"
        self._meta = meta = connect(self.database_url, application_name="labstream-cdc")
        # the offsets row is bookkeeping (the slot holds the position): no fsync wait
        meta.execute("SET synchronous_commit = off")
        meta.commit()
        catalog.preflight(meta)
        tables = catalog.publish_captured_tables(meta, s)
        catalog.warn_about_tables(meta, tables)
        check_bootstrap_resolves(self.bootstrap)
        self._producer = ChangeProducer(self.bootstrap, s, on_backpressure=self._keep_alive)
        initial_topics = [s.heartbeat_topic] + [s.topic_for(t.schema, t.name) for t in tables]
        if s.provide_transaction_metadata:
            initial_topics.append(s.transaction_topic)
        self._producer.ensure_topics(initial_topics)
        self._topics = set(initial_topics)
        self._builder = EventBuilder(s, meta.info.dbname, self._details_for)
        serializer = self._make_serializer()
        self._emitter = Emitter(
            self._producer, serializer, self._ensure_topic,
            oversized=OversizedPolicy(s.oversized_record_mode, meta, serializer.value_bytes))
        self._store = store = OffsetStore(meta, s.connector_name)
        offsets = self._drop_leftover_slots(store.load())
        names = {s.slot_name} | ({offsets.slot_name} if offsets else set())
        exists = {name: catalog.slot_info(meta, name) is not None for name in names}
        plan = plan_start(s.snapshot_mode, offsets, s.slot_name, exists)
        if plan.warning:
            kv(log, "warning", plan.warning, slot=plan.slot)
        if plan.reset_offsets:
            store.delete()
            offsets = None
        kv(log, "info", "connector starting", plan=plan.kind, slot=plan.slot,
           publication=s.publication, tables=len(tables), snapshot_mode=s.snapshot_mode)
        if plan.kind == "fresh_snapshot":
            self._fresh_snapshot(plan.slot)
        elif plan.kind == "fresh_stream":
            repl = self._open_replication()
            created = repl.create_slot(plan.slot, export_snapshot=False)
            store.save(ConnectorOffsets(s.connector_name, plan.slot, plan.record_state,
                                        consistent_point=created.consistent_point))
            self._stream(repl, plan.slot)
        elif plan.kind == "resume":
            if offsets is None or offsets.snapshot_state != plan.record_state:
                base = offsets or ConnectorOffsets(s.connector_name, plan.slot)
                store.save(replace(base, snapshot_state=plan.record_state))
            self._stream(self._open_replication(), plan.slot)
        else:
            self._handover(plan.slot, offsets)

    def _drop_leftover_slots(self, offsets: ConnectorOffsets | None) -> ConnectorOffsets | None:
        """A crash mid-hand-over leaves a half-made new slot or a replaced old one."""
        if offsets is None or not (offsets.pending_slot or offsets.retired_slot):
            return offsets
        for name in (offsets.pending_slot, offsets.retired_slot):
            if name and name != offsets.slot_name:
                catalog.drop_slot(self._meta, name)
        cleaned = replace(offsets, pending_slot=None, retired_slot=None)
        self._store.save(cleaned)
        return cleaned

    # -- snapshot paths ---------------------------------------------------------------------

    def _fresh_snapshot(self, slot: str) -> None:
        s = self.settings
        self.phase = "snapshot"
        repl = self._open_replication()
        created = repl.create_slot(slot, export_snapshot=True)
        # durable BEFORE reading: a crash from here on is resumed by a hand-over
        self._store.save(ConnectorOffsets(s.connector_name, slot, "running",
                                          consistent_point=created.consistent_point))
        kv(log, "info", "snapshot started", slot=slot,
           consistent_point=lsn_to_str(created.consistent_point))
        reader = SnapshotReader(self.database_url, created.snapshot_name or "")
        try:
            self._read_snapshot(reader, created.consistent_point)
        finally:
            reader.close()
        self._store.save(ConnectorOffsets(s.connector_name, slot, "done",
                                          consistent_point=created.consistent_point,
                                          last_commit_lsn=created.consistent_point))
        kv(log, "info", "snapshot done", slot=slot, records=self._emitter.records)
        self._stream(repl, slot)

    def _handover(self, old_slot: str, offsets: ConnectorOffsets | None) -> None:
        """Snapshot again without losing what the old slot kept since its position:
        stream the old slot up to a new slot's snapshot point, snapshot there, continue
        on the new slot."""
        s = self.settings
        self.phase = "handover"
        if offsets is None:
            info = catalog.slot_info(self._meta, old_slot)
            offsets = ConnectorOffsets(s.connector_name, old_slot, "running",
                                       consistent_point=info.confirmed_flush_lsn if info else None)
        new_slot = f"{s.slot_name}_h{secrets.token_hex(4)}"
        self._store.save(replace(offsets, slot_name=old_slot, snapshot_state="running",
                                 pending_slot=new_slot))
        new_repl = self._open_replication()
        created = new_repl.create_slot(new_slot, export_snapshot=True)
        reader = SnapshotReader(self.database_url, created.snapshot_name or "")  # imports now
        try:
            catalog.emit_wal_message(self._meta, HANDOVER_PREFIX, new_slot)
            kv(log, "info", "snapshot hand-over: streaming the old slot up to the new snapshot",
               old_slot=old_slot, new_slot=new_slot,
               snapshot_point=lsn_to_str(created.consistent_point))
            old_repl = self._open_replication()
            self._stream(old_repl, old_slot, stop_at=created.consistent_point, confirm=False)
            old_repl.close()
            self._repls.remove(old_repl)
            assert self._producer is not None
            self._producer.flush_all(self._tracker)
            self.phase = "snapshot"
            self._read_snapshot(reader, created.consistent_point)
        finally:
            reader.close()
        self._store.save(ConnectorOffsets(s.connector_name, new_slot, "done",
                                          consistent_point=created.consistent_point,
                                          retired_slot=old_slot,
                                          last_commit_lsn=created.consistent_point))
        catalog.drop_slot(self._meta, old_slot)
        self._store.save(ConnectorOffsets(s.connector_name, new_slot, "done",
                                          consistent_point=created.consistent_point,
                                          last_commit_lsn=created.consistent_point))
        kv(log, "info", "snapshot hand-over done", slot=new_slot, records=self._emitter.records)
        self._stream(new_repl, new_slot)

    def _read_snapshot(self, reader: SnapshotReader, consistent_point: int) -> None:
        producer = self._producer
        assert producer is not None
        tracker = self._tracker = DeliveryTracker()
        ticket = tracker.open(0)
        read_time = now_us()
        schemas: dict[int, Any] = {}
        done_tables: list[str] = []
        current = None
        rows = 0
        for row in reader.read_all(self.settings.table_filter):
            if self.stopping:
                raise Stopped
            table = schemas.get(row.table.oid)
            if table is None:
                table = schemas[row.table.oid] = self._on_relation(row.relation)
            if current is not None and current != row.table.qualified:
                done_tables.append(current)
                self._store.record_progress({"tables_done": done_tables, "rows": rows})
            current = row.table.qualified
            event = self._builder.snapshot_event(table, row.values, row.marker,
                                                 consistent_point, read_time)
            self._emitter.emit(OutEvent(event, None), ticket)
            rows += 1
            if rows & 1023 == 0:
                producer.poll(0)
                tracker.advance()
        ticket.sealed = True
        producer.flush_all(tracker)
        if current is not None:
            done_tables.append(current)
        self._store.record_progress({"tables_done": done_tables, "rows": rows})

    # -- streaming ----------------------------------------------------------------------------

    def _stream(self, repl: ReplicationSession, slot: str, *, stop_at: int | None = None,
                confirm: bool = True) -> None:
        s = self.settings
        producer = self._producer
        assert producer is not None
        repl.start(slot, s.publication)
        self._repl = repl
        self.phase = "streaming" if stop_at is None else "handover"
        tracker = self._tracker = DeliveryTracker()
        assembler = TransactionAssembler(self._on_batch, self._on_relation, self._on_standalone,
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
        gc.collect()
        gc.freeze()
        while not self.stopping:
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
            producer.poll(0)
            if now >= next_feedback:
                next_feedback = now + feedback_every
                if tracker.advance() and confirm:
                    repl.feedback(tracker.confirmed_lsn or 0, write_lsn=repl.wal_end)
                if confirm and now >= next_offsets and tracker.confirmed_lsn != recorded_lsn:
                    next_offsets = now + offsets_every
                    recorded_lsn = tracker.confirmed_lsn
                    self._record_ack(tracker)
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
            self._finish_stream(repl, tracker)
        self._repl = None

    def _finish_stream(self, repl: ReplicationSession, tracker: DeliveryTracker) -> None:
        """Clean stop: flush the producer, confirm what Kafka has, record it."""
        assert self._producer is not None
        self.phase = "stopping"
        remaining = self._producer.flush(30)
        tracker.advance()
        if tracker.confirmed_lsn:
            repl.feedback(tracker.confirmed_lsn)
            self._record_ack(tracker)
        kv(log, "info", "stopped", confirmed_lsn=lsn_to_str(tracker.confirmed_lsn or 0),
           unacknowledged=remaining)

    def _record_ack(self, tracker: DeliveryTracker) -> None:
        if tracker.confirmed_lsn is None:
            return
        commit_us = tracker.confirmed_commit_time_us
        from datetime import UTC, datetime

        commit_at = datetime.fromtimestamp(commit_us / 1e6, UTC) if commit_us else None
        self._store.record_ack(tracker.confirmed_lsn, commit_at)

    # -- callbacks from the assembler -----------------------------------------------------------

    def _on_batch(self, batch: TxBatch) -> None:
        ticket = self._tracker.open(batch.end_lsn if batch.final else 0, batch.commit_time_us)
        emit = self._emitter.emit
        for out in self._builder.batch_events(batch):
            emit(out, ticket)
        ticket.sealed = True

    def _on_relation(self, relation: Any) -> Any:
        table = self._builder.on_relation(relation)
        if table is not None:
            self._ensure_topic(table.topic)
        return table

    def _on_standalone(self, standalone: StandaloneMessage) -> None:
        ticket = self._tracker.open(standalone.lsn)
        out = self._builder.standalone_message(standalone.message, standalone.lsn)
        if out is not None:
            self._emitter.emit(out, ticket)
        ticket.sealed = True

    def _heartbeat(self, tracker: DeliveryTracker) -> None:
        s = self.settings
        ticket = tracker.open(0)
        self._emitter.emit(OutEvent(heartbeat_event(s.heartbeat_topic, s.topic_prefix), None),
                           ticket)
        ticket.sealed = True
        catalog.emit_wal_message(self._meta, HEARTBEAT_PREFIX, str(int(time.time() * 1000)))

    def _keep_alive(self) -> None:
        """While Kafka applies back-pressure: keep the walsender from timing out."""
        now = time.monotonic()
        if self._repl is not None and now - self._last_keepalive > 1.0:
            self._last_keepalive = now
            self._tracker.advance()
            # 0 re-sends the last position (psycopg2 keeps the highest one given)
            confirmed = self._tracker.confirmed_lsn if self.phase == "streaming" else 0
            self._repl.feedback(confirmed or 0)

    def _ensure_topic(self, topic: str) -> None:
        if topic not in self._topics:
            assert self._producer is not None
            self._producer.ensure_topics([topic])
            self._topics.add(topic)

    def _details_for(self, rel_oid: int) -> catalog.TableDetails:
        return catalog.table_details(self._meta, rel_oid)

    def _make_serializer(self) -> EventSerializer:
        if self._serializer is not None:
            return self._serializer
        from connectors.registry import registry_from_settings
        from connectors.serde import serializer_from_settings

        registry = None
        if self.settings.serializer == "avro":
            registry = registry_from_settings(database_url=self.database_url)
        return serializer_from_settings(self.settings.serializer, registry=registry)


def _is_own_permanent(exc: BaseException) -> bool:
    """Our own non-retryable errors (SlotLost, a config error) stop at once, as they are."""
    return isinstance(exc, LabstreamError) and not isinstance(
        exc, (RetryableError, ServiceUnavailable))


def check_bootstrap_resolves(bootstrap: str) -> None:
    """An unknown Kafka host is a permanent error; librdkafka would only retry it forever
    (and print a FAIL line per attempt)."""
    for server in bootstrap.split(","):
        host = server.strip().rsplit(":", 1)[0].strip("[]")
        if not host:
            continue
        try:
            socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError) as exc:
            raise SourceDisconnected(f"Kafka bootstrap host {host!r} does not resolve: {exc}",
                                     kafka_error_name="_RESOLVE") from exc


def _reached(decoded: Any, stop_at: int) -> bool:
    """Hand-over: has the old slot's stream reached the new slot's snapshot point?"""
    if isinstance(decoded, Begin):
        return decoded.final_lsn >= stop_at
    if isinstance(decoded, Message) and not decoded.transactional:
        return decoded.lsn >= stop_at
    return False
