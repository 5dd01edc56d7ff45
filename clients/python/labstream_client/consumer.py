"""A plain consumer for labstream's topics (needs the `kafka` extra: confluent-kafka).

`ChangeConsumer` yields `Record`s: decoded key, typed value, headers and trace context.
Offsets are committed at least once: a record's offset is stored for the (automatic)
commit only when the loop asks for the next record, i.e. after your code handled it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from labstream_client.decoding import Decoder
from labstream_client.envelope import Value
from labstream_client.tracecontext import TraceContext, trace_context


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: dict[str, Any] | None
    value: Value  # ChangeEvent, TransactionMarker, a dict, or None (tombstone)
    headers: list[tuple[str, bytes]]
    trace: TraceContext | None


class ChangeConsumer:
    """Consume labstream topics with decoding and trace context done.

    `registry_url` is the Confluent-compatible registry the connector registered with
    (`labstream registry serve` for the default lab-database registry); `config` adds
    or overrides librdkafka settings (TLS, SASL, ...).
    """

    def __init__(self, topics: Iterable[str], *, bootstrap_servers: str, group_id: str,
                 registry_url: str | None = None, config: dict[str, Any] | None = None,
                 poll_timeout_s: float = 1.0) -> None:
        from confluent_kafka import Consumer  # the `kafka` extra

        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers, "group.id": group_id,
            "auto.offset.reset": "earliest", "enable.auto.commit": True,
            "enable.auto.offset.store": False,  # stored after the record was handled
        }
        settings.update(config or {})
        self.decoder = Decoder(registry_url)
        self.poll_timeout_s = poll_timeout_s
        self._consumer = Consumer(settings)
        self._consumer.subscribe(list(topics))
        self._closed = False

    def __iter__(self) -> Iterator[Record]:
        from confluent_kafka import KafkaException

        while not self._closed:
            message = self._consumer.poll(self.poll_timeout_s)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                continue  # transient (e.g. partition EOF): librdkafka retries by itself
            yield self.decode(message)
            self._consumer.store_offsets(message)

    def decode(self, message: Any) -> Record:
        """A `Record` for one confluent-kafka `Message` (use it with your own consumer)."""
        headers = list(message.headers() or [])
        return Record(message.topic(), message.partition(), message.offset(),
                      self.decoder.key(message.key()), self.decoder.value(message.value()),
                      headers, trace_context(headers))

    def commit(self) -> None:
        """Commit now what was handled (the automatic commit does it every 5 s)."""
        from confluent_kafka import KafkaError, KafkaException

        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing handled yet: fine
                raise

    def close(self) -> None:
        """Commit what was handled and leave the group."""
        if not self._closed:
            self._closed = True
            self._consumer.close()

    def __enter__(self) -> ChangeConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
