"""Serialise events, give traced transactions one PRODUCER span and W3C headers, produce them.

Only records whose transaction carried a trace context are traced, and they share
ONE span per transaction batch (`send <topic>`, or `send` when the transaction
wrote several topics; child of the transaction's context): every record of the
batch carries that span's `traceparent`, so each consumer's CONSUMER span is a
child of it. The per-record detail is kept as one span event per topic-partition
(first/last offset, record count), and the span ends when Kafka has acknowledged
the last record. Per record this costs a counter and a dict update in the delivery
callback, not a span (bench/tracing_overhead.py; docs/BENCHMARKS.md). Untraced
records cost no tracing work at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from connectors.envelope import ChangeEvent
from connectors.serde import EventSerializer
from connectors.source.events import OutEvent
from connectors.source.oversized import RECORD_OVERHEAD_BYTES, OversizedPolicy
from connectors.source.producer import ChangeProducer, TxTicket
from tracing.batch import LinkedTx, TxSendSpan, TxSpans

_NO_LIMIT = 1 << 62


class Emitter:
    def __init__(self, producer: ChangeProducer, serialize: EventSerializer,
                 ensure_topic: Callable[[str], None],
                 tracer: trace.Tracer | None = None, *,
                 oversized: OversizedPolicy | None = None, spans_per_window: int = 0) -> None:
        self.producer = producer
        self.key_bytes = serialize.key_bytes
        self.value_bytes = serialize.value_bytes
        self.ensure_topic = ensure_topic
        self.tracer = tracer or trace.get_tracer("labstream.cdc")
        # own spans for the first `spans_per_window` traced transactions between two
        # producer polls, one linked window span for the rest (tracing/batch.py)
        self.spans = TxSpans(self.tracer, spans_per_window)
        self.records = 0
        self.bytes = 0  # key + value bytes (/metrics)
        self._tx: TxSendSpan | LinkedTx | None = None  # the open transaction span
        self._tx_parent: Context | None = None
        self._tx_ticket: TxTicket | None = None
        self.oversized = oversized
        # topic -> largest record it takes (filled by ensure_topics); unknown: no check
        self.limits: dict[str, int] = getattr(producer, "record_limits", {})

    def emit(self, out: OutEvent, ticket: TxTicket) -> None:
        event = out.event
        self.ensure_topic(event.topic)
        key = self.key_bytes(event)
        value = self.value_bytes(event)
        if value is not None and len(value) + RECORD_OVERHEAD_BYTES > self.limits.get(
                event.topic, _NO_LIMIT):
            event, value = self._fit(event, key, value)
        ticket.outstanding += 1
        self.records += 1
        self.bytes += len(key or b"") + len(value or b"")
        if out.context is None:
            headers = list(event.headers) if event.headers else None
            self.producer.produce(event.topic, key, value, headers, ticket.delivered)
            return
        tx = self._tx
        # a transaction's records share one Context object (events.py builds it once per
        # batch); a new object or a new ticket is a new transaction (or a per-row context)
        if tx is None or out.context is not self._tx_parent or ticket is not self._tx_ticket:
            tx = self._start(out.context, ticket)
        if tx.linked:  # over the span budget: counted in the window span, no more
            tx.add(event.topic, _TableName.of(event.table))
        else:
            value_dict = event.value
            tx.add(event.topic, _TableName.of(event.table),
                   value_dict.get("op") if value_dict is not None else None)
        # Debezium's own headers (a primary-key change) travel beside the trace context
        headers = [*event.headers, *tx.headers] if event.headers else tx.headers
        self.producer.produce(event.topic, key, value, headers, tx.delivered)

    def _fit(self, event: ChangeEvent, key: bytes | None,
             value: bytes) -> tuple[ChangeEvent, bytes]:
        limit = self.limits[event.topic]
        if self.oversized is None:  # no policy wired (benchmarks): let Kafka refuse it
            return event, value
        return self.oversized.fit(event, key, value, limit)

    def end_batch(self) -> None:
        """The connector emitted every record of the current batch: the span may end once
        Kafka has acknowledged them all."""
        if self._tx is not None:
            self._tx.seal()
            self._tx = self._tx_parent = self._tx_ticket = None

    def new_window(self) -> None:
        """The producer is being polled: a new window of the span budget begins (and the
        last window's shared span, if any, ends)."""
        self.spans.new_window()

    def _start(self, parent: Context, ticket: TxTicket) -> TxSendSpan | LinkedTx:
        self.end_batch()
        tx = self.spans.start(parent, ticket.delivered)
        self._tx, self._tx_parent, self._tx_ticket = tx, parent, ticket
        return tx


class _TableName:
    """`schema.table` of a TableSchema, formatted only if the span is described (one
    instance per TableSchema, so the span compares identities per record)."""

    __slots__ = ("table",)
    _cache: dict[int, tuple[Any, _TableName]] = {}

    def __init__(self, table: Any) -> None:
        self.table = table

    def __str__(self) -> str:
        return f"{self.table.schema_name}.{self.table.table_name}"

    @classmethod
    def of(cls, table: Any) -> _TableName | None:
        if table is None:
            return None
        cached = cls._cache.get(id(table))
        if cached is None or cached[0] is not table:
            cached = cls._cache[id(table)] = (table, cls(table))
        return cached[1]
