"""Kafka side of the connector: an idempotent confluent-kafka Producer, topic
creation through the admin client, and `DeliveryTracker`, which turns per-record
acknowledgements into "the newest LSN that is safe to confirm".

A source transaction is confirmable when Kafka acknowledged all of its records
and all records of every earlier transaction; the slot is confirmed only up to
that transaction's end LSN, so a crash re-sends (never skips) what was unacked.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from base.kafka import kafka_connection
from base.logs import kv
from connectors.source.exceptions import DeliveryFailed, SourceDisconnected
from connectors.source.kafkalog import RateLimitedKafkaLog
from tracing.metrics import observe_commit_to_kafka

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class TxTicket:
    """One source transaction (or heartbeat) on its way to Kafka."""

    end_lsn: int
    commit_time_us: int | None
    outstanding: int = 0
    sealed: bool = False
    tracker: DeliveryTracker | None = None

    def delivered(self, err: KafkaError | None, msg: Any = None) -> None:
        """confluent-kafka delivery callback (runs inside poll/flush)."""
        self.outstanding -= 1
        if err is not None and self.tracker is not None:
            self.tracker.fail(err, msg)


class DeliveryTracker:
    """Ordered tickets; the confirmable LSN is the end of the longest fully acked prefix."""

    def __init__(self) -> None:
        self._tickets: deque[TxTicket] = deque()
        self.error: KafkaError | None = None
        self.error_topic: str | None = None
        self.confirmed_lsn: int | None = None
        self.confirmed_commit_time_us: int | None = None

    def open(self, end_lsn: int, commit_time_us: int | None = None) -> TxTicket:
        ticket = TxTicket(end_lsn, commit_time_us, tracker=self)
        self._tickets.append(ticket)
        return ticket

    def fail(self, err: KafkaError, msg: Any = None) -> None:
        if self.error is None:
            self.error = err
            self.error_topic = msg.topic() if msg is not None else None

    def advance(self) -> bool:
        """Drop acked tickets from the head; True when the confirmable LSN moved."""
        if self.error is not None:
            where = f" on topic {self.error_topic}" if self.error_topic else ""
            raise DeliveryFailed(
                f"Kafka did not accept a change record{where}: {self.error.str()}",
                hint="the connector restarts from the last confirmed LSN; check the broker",
                kafka_error_name=self.error.name(),
            )
        moved = False
        tickets = self._tickets
        while tickets and tickets[0].sealed and tickets[0].outstanding <= 0:
            ticket = tickets.popleft()
            if self.confirmed_lsn is None or ticket.end_lsn > self.confirmed_lsn:
                self.confirmed_lsn = ticket.end_lsn
                if ticket.commit_time_us is not None:
                    self.confirmed_commit_time_us = ticket.commit_time_us
                    observe_commit_to_kafka(ticket.commit_time_us)  # /metrics histogram
                moved = True
        return moved

    @property
    def in_flight(self) -> int:
        return len(self._tickets)


def producer_config(bootstrap: str, settings: Any, client_id: str) -> dict[str, Any]:
    return {
        **kafka_connection(bootstrap).librdkafka(),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "batch.size": min(settings.batch_size, settings.max_record_bytes),
        "batch.num.messages": 10_000,
        "compression.type": settings.compression_type,
        # bounded memory: back-pressure (BufferError) instead of a growing queue
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 131_072,
        # agrees with the topics' max.message.bytes (ensure_topics); a record the
        # emitter finds larger goes through the oversized-record policy instead
        "message.max.bytes": settings.max_record_bytes,
        "socket.keepalive.enable": True,
        # librdkafka leaves Nagle on: a small produce request can then wait for the ACK
        # of the previous one (delayed ACK), a tail-latency stall at a steady trickle
        "socket.nagle.disable": True,
    }


class ChangeProducer:
    """Thin wrapper: produce with back-pressure, create topics before first use."""

    def __init__(
        self,
        bootstrap: str,
        settings: Any,
        *,
        client_id: str = "labstream-cdc",
        on_backpressure: Callable[[], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.settings = settings
        self._fatal: KafkaError | None = None
        self._last_error_code: int | None = None
        self._last_error_at = 0.0
        self.last_error_name: str | None = None
        kafka_log = RateLimitedKafkaLog()
        config = producer_config(bootstrap, settings, client_id)
        config["error_cb"] = self._on_error
        config["logger"] = kafka_log
        self.producer = Producer(config)
        admin_config: dict[str, Any] = {**kafka_connection(bootstrap).librdkafka(),
                                        "client.id": client_id, "logger": kafka_log}
        self.admin: AdminClient | None = AdminClient(admin_config)
        self._known_topics: set[str] = set()
        # topic -> the largest record it takes (max.message.bytes, ours or found)
        self.record_limits: dict[str, int] = {}
        self._on_backpressure = on_backpressure

    def close(self) -> None:
        """Destroy both clients now (their threads and sockets), not at garbage collection:
        a retry loop that leaves this to the collector grows by ~10 threads per attempt."""
        with contextlib.suppress(Exception):
            self.producer.close()
        self.admin = None
        self._on_backpressure = None

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        self.last_error_name = err.name()
        # librdkafka repeats transport errors every few ms while a broker is down
        now = time.monotonic()
        if err.code() != self._last_error_code or now - self._last_error_at > 10:
            self._last_error_code, self._last_error_at = err.code(), now
            kv(log, "warning", "kafka client error", error=err.str(), code=err.name())

    def check(self) -> None:
        if self._fatal is not None:
            raise DeliveryFailed(f"Kafka producer failed: {self._fatal.str()}", retry_after=1.0,
                                 kafka_error_name=self._fatal.name())

    def ensure_topics(self, topics: Iterable[str], *, config: dict[str, str] | None = None) -> None:
        """Create missing topics (never rely on broker auto-create)."""
        wanted = [t for t in topics if t not in self._known_topics]
        if not wanted:
            return
        admin = self.admin
        assert admin is not None, "ChangeProducer used after close()"
        try:
            existing = set(admin.list_topics(timeout=5).topics)
        except KafkaException as exc:
            raise SourceDisconnected(
                f"Kafka at {self.bootstrap} did not answer: {exc}",
                hint="start the stack (`labstream stack up`) "
                "or fix LABSTREAM_KAFKA_BOOTSTRAP_SERVERS",
                retry_after=2.0,
                kafka_error_name=self.last_error_name,
            ) from exc
        finally:
            admin.poll(0)  # serve its log lines (through RateLimitedKafkaLog)
        limit = self.settings.max_record_bytes
        missing = [t for t in wanted if t not in existing]
        if missing:
            topic_config = {"max.message.bytes": str(limit), **(config or {})}
            new = [
                NewTopic(
                    t,
                    num_partitions=self.settings.topic_partitions,
                    replication_factor=self.settings.topic_replication_factor,
                    config=topic_config,
                )
                for t in missing
            ]
            for topic, future in admin.create_topics(new, operation_timeout=15).items():
                try:
                    future.result()
                    kv(log, "info", "topic created", topic=topic, max_message_bytes=limit)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise SourceDisconnected(
                            f"could not create topic {topic}: {exc}", retry_after=2.0
                        ) from exc
                    existing.add(topic)
                else:
                    self.record_limits[topic] = limit
        found = [t for t in wanted if t in existing]
        if found:
            self.record_limits.update(self._existing_limits(admin, found, limit))
        self._known_topics.update(wanted)

    def _existing_limits(self, admin: AdminClient, topics: list[str],
                         limit: int) -> dict[str, int]:
        """The smaller of our limit and each existing topic's own max.message.bytes."""
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
        limits: dict[str, int] = {}
        for resource, future in admin.describe_configs(resources, request_timeout=15).items():
            try:
                entry = future.result().get("max.message.bytes")
                own = int(entry.value) if entry is not None and entry.value else limit
            except KafkaException as exc:
                raise SourceDisconnected(
                    f"could not read the config of topic {resource.name}: {exc}",
                    retry_after=2.0) from exc
            if own < limit:
                kv(log, "warning", "existing topic takes smaller records than "
                   "LABSTREAM_CDC_MAX_RECORD_BYTES: larger records follow the oversized-record "
                   "mode", topic=resource.name, max_message_bytes=own,
                   fix=f"kafka-configs --alter --entity-type topics --entity-name "
                   f"{resource.name} --add-config max.message.bytes={limit}")
            limits[resource.name] = min(own, limit)
        return limits

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        on_delivery: Callable[[Any, Any], None],
    ) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # queue full: serve callbacks, keep the replication link alive, retry
                self.producer.poll(0.05)
                if self._on_backpressure is not None:
                    self._on_backpressure()
                self.check()

    def poll(self, timeout: float = 0.0) -> int:
        return self.producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Wait until every record is acknowledged; returns how many are still queued."""
        return self.producer.flush(timeout)

    def flush_all(self, tracker: DeliveryTracker, *, timeout_s: float = 120.0) -> None:
        remaining = self.flush(timeout_s)
        self.check()
        tracker.advance()
        if remaining:
            raise DeliveryFailed(
                f"{remaining} records were not acknowledged by Kafka within {timeout_s:.0f}s",
                hint="check the broker; the connector restarts from the last confirmed LSN",
                retry_after=5.0,
            )
