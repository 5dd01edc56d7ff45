"""The coordinator: start-up plan, backoff, the one error classifier, shutdown.

`CdcConnector(settings).run()` runs sessions until `stop()` (SIGTERM/SIGINT in the
CLI). A session connects, plans the start (startup.plan_start), runs the snapshot
source if the plan says so, then the streaming source. A failing session is
classified (classify.py): transient failures back off and start a new session, a
permanent one ends the run after a bounded number of attempts. Every path keeps one
rule (docs/connector.md, "Crash safety"): a slot is confirmed only up to the end of
the newest transaction whose records, and all earlier ones, Kafka acknowledged, and
never past its snapshot point before the snapshot is 'done'.

The parts, as Debezium splits them: this coordinator, `SnapshotSource`
(snapshot_source.py), `StreamingSource` (streaming_source.py), `OffsetContext`
(offset_context.py), and the `SourceContext` they share (context.py).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import threading
import time
from typing import Any

from base.db import connect
from base.errors import LabstreamError, RetryableError, ServiceUnavailable
from base.logs import kv
from base.settings import service_settings
from connectors.serde import EventSerializer
from connectors.source import catalog
from connectors.source.classify import classify
from connectors.source.config import CdcSettings
from connectors.source.context import SourceContext, Stopped
from connectors.source.emitter import Emitter
from connectors.source.events import EventBuilder
from connectors.source.exceptions import ConnectorGaveUp, SourceDisconnected
from connectors.source.offset_context import OffsetContext
from connectors.source.offsets import ConnectorOffsets, OffsetStore
from connectors.source.oversized import OversizedPolicy
from connectors.source.producer import ChangeProducer
from connectors.source.snapshot_source import SnapshotSource
from connectors.source.startup import plan_start
from connectors.source.streaming_source import StreamingSource

log = logging.getLogger(__name__)


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
        self._ctx: SourceContext | None = None
        self._meta: Any = None
        self._producer: ChangeProducer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def phase(self) -> str:
        return self._ctx.phase if self._ctx is not None else "starting"

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
        if self._ctx is not None:
            self._ctx.close()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(5)
            self._producer.close()
            self._producer = None
        # the streaming source froze the heap (gc.freeze); let this session's cycles go
        gc.unfreeze()
        gc.set_threshold(700, *gc.get_threshold()[1:])  # and its raised gen-0 threshold
        if self._meta is not None:
            with contextlib.suppress(Exception):
                self._meta.close()
            self._meta = None

    # -- one session: from connect to stop or failure ---------------------------------------

    def _session(self) -> None:
        ctx = self._ctx = self._open_context()
        s = self.settings
        offsets = self._drop_leftover_slots(ctx, ctx.offsets.load())
        names = {s.slot_name} | ({offsets.slot_name} if offsets else set())
        exists = {name: catalog.slot_info(ctx.meta, name) is not None for name in names}
        plan = plan_start(s.snapshot_mode, offsets, s.slot_name, exists)
        if plan.warning:
            kv(log, "warning", plan.warning, slot=plan.slot)
        if plan.reset_offsets:
            ctx.offsets.delete()
            offsets = None
        kv(log, "info", "connector starting", plan=plan.kind, slot=plan.slot,
           publication=s.publication, tables=ctx.table_count, snapshot_mode=s.snapshot_mode)
        streaming = StreamingSource(ctx)
        snapshot = SnapshotSource(ctx, streaming)
        if plan.kind == "fresh_snapshot":
            repl, slot = snapshot.fresh(plan.slot)
        elif plan.kind == "fresh_stream":
            repl, slot = ctx.open_replication(), plan.slot
            created = repl.create_slot(plan.slot, export_snapshot=False)
            ctx.offsets.streaming_from_new_slot(plan.slot, plan.record_state,
                                                created.consistent_point)
        elif plan.kind == "resume":
            ctx.offsets.resuming(offsets, plan.slot, plan.record_state)
            repl, slot = ctx.open_replication(), plan.slot
        else:
            repl, slot = snapshot.handover(plan.slot, offsets)
        streaming.stream(repl, slot)

    def _open_context(self) -> SourceContext:
        """Connections, publication, topics, builder, emitter, offsets of one session."""
        s = self.settings
        self._meta = meta = connect(self.database_url, application_name="labstream-cdc")
        # the offsets row is bookkeeping (the slot holds the position): no fsync wait
        meta.execute("SET synchronous_commit = off")
        meta.commit()
        catalog.preflight(meta)
        tables = catalog.publish_captured_tables(meta, s)
        catalog.warn_about_tables(meta, tables)
        check_bootstrap_resolves(self.bootstrap)
        self._producer = producer = ChangeProducer(self.bootstrap, s,
                                                   on_backpressure=self._keep_alive)
        initial_topics = [s.heartbeat_topic] + [s.topic_for(t.schema, t.name) for t in tables]
        if s.provide_transaction_metadata:
            initial_topics.append(s.transaction_topic)
        producer.ensure_topics(initial_topics)
        ctx = SourceContext(s, self.database_url, meta, self._stop, producer,
                            set(initial_topics))
        ctx.table_count = len(tables)
        ctx.builder = EventBuilder(s, meta.info.dbname, ctx.details_for)
        serializer = self._make_serializer()
        ctx.emitter = Emitter(
            producer, serializer, ctx.ensure_topic,
            oversized=OversizedPolicy(s.oversized_record_mode, meta, serializer.value_bytes),
            spans_per_window=s.trace_spans_per_window)
        ctx.offsets = OffsetContext(OffsetStore(meta, s.connector_name), s.connector_name)
        return ctx

    def _keep_alive(self) -> None:
        if self._ctx is not None:
            self._ctx.keep_alive()

    def _drop_leftover_slots(self, ctx: SourceContext,
                             offsets: ConnectorOffsets | None) -> ConnectorOffsets | None:
        """A crash mid-hand-over leaves a half-made new slot or a replaced old one."""
        if offsets is None or not (offsets.pending_slot or offsets.retired_slot):
            return offsets
        for name in (offsets.pending_slot, offsets.retired_slot):
            if name and name != offsets.slot_name:
                catalog.drop_slot(ctx.meta, name)
        return ctx.offsets.leftovers_dropped(offsets)

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
