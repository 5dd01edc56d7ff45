"""Serialise events, give traced ones a PRODUCER span and W3C headers, produce them.

Only records whose transaction carried a trace context get a span (`send
<topic>`, child of that context, OTel messaging attributes); the span ends when
Kafka acknowledges the record. Untraced records cost no tracing work at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from connectors.envelope import ChangeEvent
from connectors.serde import EventSerializer
from connectors.source.events import OutEvent
from connectors.source.oversized import RECORD_OVERHEAD_BYTES, OversizedPolicy
from connectors.source.producer import ChangeProducer, TxTicket
from tracing.propagation import inject_headers
from tracing.semconv import set_delivery_attributes, set_lab_attributes, set_send_attributes

_NO_LIMIT = 1 << 62


class Emitter:
    def __init__(self, producer: ChangeProducer, serialize: EventSerializer,
                 ensure_topic: Callable[[str], None],
                 tracer: trace.Tracer | None = None, *,
                 oversized: OversizedPolicy | None = None) -> None:
        self.producer = producer
        self.key_bytes = serialize.key_bytes
        self.value_bytes = serialize.value_bytes
        self.ensure_topic = ensure_topic
        self.tracer = tracer or trace.get_tracer("labstream.cdc")
        self.records = 0
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
        if out.context is None:
            headers = list(event.headers) if event.headers else None
            self.producer.produce(event.topic, key, value, headers, ticket.delivered)
            return
        self._emit_traced(event, key, value, out.context, ticket)

    def _fit(self, event: ChangeEvent, key: bytes | None,
             value: bytes) -> tuple[ChangeEvent, bytes]:
        limit = self.limits[event.topic]
        if self.oversized is None:  # no policy wired (benchmarks): let Kafka refuse it
            return event, value
        return self.oversized.fit(event, key, value, limit)

    def _emit_traced(self, event: ChangeEvent, key: bytes | None, value: bytes | None,
                     parent: Context, ticket: TxTicket) -> None:
        span = self.tracer.start_span(f"send {event.topic}", context=parent, kind=SpanKind.PRODUCER)
        set_send_attributes(span, topic=event.topic, tombstone=value is None)
        if event.table is not None and event.value is not None:
            set_lab_attributes(span, table=f"{event.table.schema_name}.{event.table.table_name}",
                               operation=event.value.get("op"))
        # a disabled tracer gives an invalid span: then pass the origin's context on as is
        carrier = trace.set_span_in_context(span, parent) if span.get_span_context().is_valid \
            else parent
        headers = inject_headers(list(event.headers or ()), context=carrier)

        def delivered(err: Any, msg: Any) -> None:
            if err is None and msg is not None:
                set_delivery_attributes(span, partition=msg.partition(), offset=msg.offset())
            elif err is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(err)))
            span.end()
            ticket.delivered(err, msg)

        self.producer.produce(event.topic, key, value, headers, delivered)
