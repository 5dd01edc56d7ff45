"""What the snapshot and streaming sources share during one session.

Debezium hands its change-event sources a context (is the task still running?) and
an event dispatcher (schemas, topics, the producer). `SourceContext` is both: the
session's settings and connections, the phase shown in logs, the replication
connections to close on the way out, and `on_relation`/`emit` as the one path from
a table's schema and an event to Kafka. The coordinator builds one per session.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from connectors.source import catalog
from connectors.source.config import CdcSettings
from connectors.source.emitter import Emitter
from connectors.source.events import EventBuilder
from connectors.source.offset_context import OffsetContext
from connectors.source.producer import ChangeProducer
from connectors.source.replication import ReplicationSession


class Stopped(Exception):
    """stop() was called: leave the current phase cleanly."""


class SourceContext:
    def __init__(self, settings: CdcSettings, database_url: str, meta: Any,
                 stop_event: threading.Event, producer: ChangeProducer,
                 topics: set[str]) -> None:
        self.settings = settings
        self.database_url = database_url
        self.meta = meta
        self.stop_event = stop_event
        self.producer = producer
        self.topics = topics
        self.phase = "connecting"
        self.table_count = 0
        self.repls: list[ReplicationSession] = []
        self.repl: ReplicationSession | None = None  # the one streaming now (keep-alive)
        self._last_keepalive = 0.0
        # set by the coordinator once the serializer and offsets are ready
        self.builder: EventBuilder
        self.emitter: Emitter
        self.offsets: OffsetContext

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def open_replication(self) -> ReplicationSession:
        repl = ReplicationSession(self.database_url)
        self.repls.append(repl)
        return repl

    def close_replication(self, repl: ReplicationSession) -> None:
        repl.close()
        self.repls.remove(repl)

    def close(self) -> None:
        for repl in self.repls:
            repl.close()
        self.repls = []
        self.repl = None

    # -- the event dispatcher -------------------------------------------------------------

    def on_relation(self, relation: Any) -> Any:
        table = self.builder.on_relation(relation)
        if table is not None:
            self.ensure_topic(table.topic)
        return table

    def ensure_topic(self, topic: str) -> None:
        if topic not in self.topics:
            self.producer.ensure_topics([topic])
            self.topics.add(topic)

    def details_for(self, rel_oid: int) -> catalog.TableDetails:
        return catalog.table_details(self.meta, rel_oid)

    def keep_alive(self) -> None:
        """While Kafka applies back-pressure: keep the walsender from timing out."""
        now = time.monotonic()
        if self.repl is not None and now - self._last_keepalive > 1.0:
            self._last_keepalive = now
            tracker = self.offsets.tracker
            tracker.advance()
            # 0 re-sends the last position (psycopg2 keeps the highest one given)
            confirmed = tracker.confirmed_lsn if self.phase == "streaming" else 0
            self.repl.feedback(confirmed or 0)
