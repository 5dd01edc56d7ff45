"""One PRODUCER span for a batch of records (a source transaction), not one per record.

A span per record cost the CDC connector two thirds of its throughput
(docs/BENCHMARKS.md); a transaction is what the user wrote in one go, so it is the
unit a trace shows. `start_tx_span` is called once per batch, every record of the
batch is produced with its `headers` (the span's `traceparent`) and its `delivered`
callback, and it ends when the batch is sealed and Kafka acknowledged the last
record (at that acknowledgement's time). What the span keeps per record is a
counter and a (topic, partition) -> first/last offset entry; at the end this becomes
one span event per topic-partition, so Honeycomb, Jaeger and `labstream trace` show
where every record went without a span each.

With the OpenTelemetry SDK's tracer (always, in labstream processes) the span is not
an SDK `Span` object: its ids come from the tracer's sampler and id generator as the
SDK would make them, and at the end it goes straight to the tracer's span processors
(the same batch processors, queues, drop counters and exporters as every other span):
the span store's processor gets its `labstream.spans` row built here from the ids
already in hex (no `ReadableSpan`, no `span_to_row` on its thread), every other
processor (OTLP, console) one `ReadableSpan`; span limits that would cut the span send
the cut `ReadableSpan` to all. The SDK object, its locks, its per-attribute validation
and its context plumbing were most of the ~100 µs a transaction cost, the ReadableSpan
and its conversion most of the rest (docs/BENCHMARKS.md, "Tracing cost, issue 15 item
1" and "Session 5"). Any other tracer gets the plain API path (`start_span` ... `end`).

At full load even that is too much for single-row transactions (~30 µs of tracing on
~50 µs of work per transaction), so `TxSpans` gives the connector a span budget per
window (the records between two producer polls: up to 256 replication messages under
load, one transaction at a trickle): the first `per_window` sampled transactions of a
window get their own span as above, the rest share ONE window span (a trace of its
own, `lab.linked_transactions` = how many) **linked to each transaction's context**,
and their records carry that context on unchanged, so each trace still goes from the
front end through the worker to the job, and the connector's hop is the linking span
(`labstream trace` shows it under "linking spans", Honeycomb and Jaeger as a link),
as the worker does for its batches (streams/agents.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SynchronousMultiSpanProcessor,
)
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceState,
)

from tracing import semconv
from tracing.propagation import kafka_trace_headers, traceparent_direct, traceparent_headers
from tracing.spanstore import (
    KIND_NAMES,
    STATUS_NAMES,
    SpanRow,
    attributes_json,
    events_json,
    links_json,
    span_row,
)

EVENT_NAME = "delivered"
SPAN_NAME = "send"
_KIND = SpanKind.PRODUCER
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)
_KIND_NAME = KIND_NAMES[_KIND]
_STATUS_UNSET, _STATUS_ERROR = STATUS_NAMES[StatusCode.UNSET], STATUS_NAMES[StatusCode.ERROR]


class TxSendSpan:
    """The PRODUCER span of one batch; `delivered` is the records' delivery callback."""

    __slots__ = (
        "_end",
        "_last",
        "_on_delivered",
        "_operations",
        "_partitions",
        "_seen",
        "_seen_at",
        "_tables",
        "_topics",
        "ended",
        "error",
        "headers",
        "last_ack_ns",
        "outstanding",
        "recording",
        "records",
        "sealed",
    )

    def __init__(self, headers: list[tuple[str, bytes]], on_delivered: Callable[[Any, Any], None],
                 recording: bool, end: Callable[[TxSendSpan], None]) -> None:
        self.headers = headers
        self._on_delivered = on_delivered
        self.recording = recording
        self._end = end  # called once, when the batch is sealed and every record acked
        self.outstanding = 0
        self.records = 0
        self.sealed = False
        self.ended = False
        self.error: Any = None
        self.last_ack_ns = 0
        # distinct values only; consecutive records mostly repeat the last ones, so a
        # comparison with the previous record's is all most records cost
        self._last: tuple[Any, Any, Any] = (None, None, None)
        self._topics: set[str] = set()
        self._tables: set[Any] = set()
        self._operations: set[str] = set()
        self._partitions: dict[tuple[str, int], list[int]] = {}  # [first, last, count]
        self._seen_at: tuple[str | None, int] = (None, -1)  # the last acknowledged's key
        self._seen: list[int] = []  # and its entry in _partitions

    linked = False  # a transaction with a span of its own (LinkedTx: over the budget)

    def count(self, topic: str, table: Any = None, operation: str | None = None) -> None:
        """One more record named in the span, not acknowledged through it: a linked
        transaction's (`LinkedTx.add`; its acknowledgements go to its ticket only)."""
        self.records += 1
        last = self._last
        if topic is not last[0] or table is not last[1] or operation != last[2]:
            self._last = (topic, table, operation)
            self._topics.add(topic)
            if table is not None:
                self._tables.add(table)
            if operation is not None:
                self._operations.add(operation)

    def add(self, topic: str, table: Any = None, operation: str | None = None) -> None:
        """One more record of the batch is being produced (`table`: anything whose str()
        names the table, formatted only when the span ends); `delivered` will see it."""
        self.outstanding += 1
        if self.recording:
            self.count(topic, table, operation)
        else:
            self.records += 1

    def delivered(self, err: Any, msg: Any) -> None:
        """confluent-kafka delivery callback of each record of the batch."""
        self.outstanding -= 1
        if err is not None:
            if self.error is None:
                self.error = err
        elif self.recording and msg is not None:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            seen = self._seen
            # consecutive acknowledgements are mostly of one partition: then two compares
            # instead of a (topic, partition) key, its hash and a dict look-up per record
            if partition != self._seen_at[1] or topic != self._seen_at[0]:
                where = (topic, partition)
                seen = self._partitions.setdefault(where, [offset, offset, 0])
                self._seen, self._seen_at = seen, where
            # Kafka acknowledges a partition's records in order (idempotent producer), so
            # this is mostly the `last` branch; compare, not min/max
            if offset > seen[1]:
                seen[1] = offset
            elif offset < seen[0]:
                seen[0] = offset
            seen[2] += 1
        if self.outstanding <= 0:  # the last one so far: the span may end at this time
            self.last_ack_ns = time.time_ns()
        self._on_delivered(err, msg)
        if self.sealed and self.outstanding <= 0:
            self.finish()

    def seal(self) -> None:
        """No more records will be added; end now if all are already acknowledged."""
        self.sealed = True
        if self.outstanding <= 0:
            self.finish()

    def finish(self) -> None:
        if self.ended:
            return
        self.ended = True
        self._end(self)

    # -- what the span says (both paths) ------------------------------------------------

    def name(self) -> str:
        return f"{SPAN_NAME} {next(iter(self._topics))}" if len(self._topics) == 1 else SPAN_NAME

    def attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            semconv.MESSAGING_SYSTEM: "kafka",
            semconv.MESSAGING_OPERATION_TYPE: "send",
            semconv.MESSAGING_OPERATION_NAME: "send",
            semconv.MESSAGING_BATCH_COUNT: self.records,
        }
        _one_or_many(attributes, self._topics, semconv.MESSAGING_DESTINATION, semconv.LAB_TOPICS)
        _one_or_many(attributes, {str(t) for t in self._tables}, semconv.LAB_TABLE,
                     semconv.LAB_TABLES)
        if len(self._operations) == 1:
            attributes[semconv.LAB_OPERATION] = next(iter(self._operations))
        if len(self._partitions) == 1:
            (_, partition), (first, last, _) = next(iter(self._partitions.items()))
            attributes[semconv.MESSAGING_PARTITION] = str(partition)
            attributes[semconv.MESSAGING_OFFSET] = first
            attributes[semconv.LAB_OFFSET_LAST] = last
        return attributes

    def event_attributes(self) -> list[dict[str, Any]]:
        """One `delivered` event's attributes per topic-partition the batch wrote."""
        return [{
            semconv.MESSAGING_DESTINATION: topic,
            semconv.MESSAGING_PARTITION: str(partition),
            semconv.MESSAGING_OFFSET: first,
            semconv.LAB_OFFSET_LAST: last,
            semconv.MESSAGING_BATCH_COUNT: count,
        } for (topic, partition), (first, last, count) in self._partitions.items()]

    def status(self) -> Status | None:
        return None if self.error is None else Status(StatusCode.ERROR, str(self.error))


def _one_or_many(attributes: dict[str, Any], values: set[str], one: str, many: str) -> None:
    if len(values) == 1:
        attributes[one] = next(iter(values))
    elif values:
        attributes[many] = tuple(sorted(values))


def start_tx_span(tracer: trace.Tracer, parent: Context,
                  on_delivered: Callable[[Any, Any], None]) -> TxSendSpan:
    """Start the PRODUCER span of a batch whose records carry `parent`'s trace.

    Reads SDK internals (`ProxyTracer._tracer`, `Tracer._is_enabled`, `_span_limits`,
    `_instrumentation_scope`): tests/unit/test_tracing_batch.py fails if an SDK upgrade
    moves them, rather than the connector failing at its first traced transaction.
    """
    real = _enabled_sdk(tracer)
    if real is not None:
        return _SdkTxSpan(real, parent).start(on_delivered)
    return _start_api(tracer, parent, on_delivered)


def _enabled_sdk(tracer: trace.Tracer) -> SdkTracer | None:
    """The SDK tracer behind `tracer` if it records (else the API path is taken)."""
    real = tracer._tracer if isinstance(tracer, trace.ProxyTracer) else tracer
    return real if isinstance(real, SdkTracer) and real._is_enabled() else None


# -- the SDK path: ids as the SDK makes them, one ReadableSpan at the end ---------------


class _SdkTxSpan:
    """What `Tracer.start_span` + `Span.end` would do for this one span, minus the `Span`."""

    __slots__ = ("flags", "links", "origin", "parent", "sampler_attributes", "span_hex",
                 "span_id", "start_ns", "trace_hex", "trace_id", "trace_state", "tracer")

    def __init__(self, tracer: SdkTracer, parent: Context) -> None:
        self.tracer = tracer
        self.origin = parent
        self.parent = trace.get_current_span(parent).get_span_context()
        self.start_ns = time.time_ns()
        self.sampler_attributes: Any = None
        # a window span's linked transactions: (their SpanContext, trace id hex, span id hex)
        self.links: list[tuple[SpanContext, str, str]] | None = None
        self._sample(parent)

    def _sample(self, parent: Context) -> None:
        tracer = self.tracer
        parent_span = self.parent
        valid = parent_span.is_valid
        if valid:
            trace_id = parent_span.trace_id
            parent_flags = parent_span.trace_flags
            random_id = parent_flags.random_trace_id
        else:  # the records' context had no valid span: the SDK starts a new trace
            trace_id = tracer.id_generator.generate_trace_id()
            random_id = tracer.id_generator.is_trace_id_random()
        trace_state: TraceState | None
        if valid and tracer.sampler is DEFAULT_ON:
            # the default policy, parentbased_always_on, decided without its three calls:
            # the parent's sampled flag, its tracestate, no attributes
            sampled = recording = parent_flags.sampled
            trace_state, attributes = parent_span.trace_state, None
        else:  # whatever OTEL_TRACES_SAMPLER configured
            result = tracer.sampler.should_sample(parent, trace_id, SPAN_NAME, _KIND, None, ())
            sampled, recording = result.decision.is_sampled(), result.decision.is_recording()
            trace_state, attributes = result.trace_state, result.attributes
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        if random_id:
            flags = trace.TraceFlags(flags | trace.TraceFlags.RANDOM_TRACE_ID)
        # the ids as numbers and as hex text (the header and the span store row use the
        # text); the SpanContext object only if a ReadableSpan is made (`_context`)
        self.trace_id, self.span_id = trace_id, tracer.id_generator.generate_span_id()
        self.trace_hex, self.span_hex = f"{trace_id:032x}", f"{self.span_id:016x}"
        self.flags, self.trace_state = flags, trace_state
        if recording:
            self.sampler_attributes = attributes or {}

    def _context(self) -> SpanContext:
        return SpanContext(self.trace_id, self.span_id, is_remote=False,
                           trace_flags=self.flags, trace_state=self.trace_state)

    def start(self, on_delivered: Callable[[Any, Any], None]) -> TxSendSpan:
        origin = self.origin
        headers = traceparent_headers(self.trace_hex, self.span_hex, self.flags,
                                      self.trace_state) if traceparent_direct(origin) \
            else kafka_trace_headers(self._context(), origin)
        recording = self.sampler_attributes is not None
        return TxSendSpan(headers, on_delivered, recording, self._end)

    def _end(self, tx: TxSendSpan) -> None:
        if self.sampler_attributes is None:
            return  # not recorded: nothing to hand to the processors, as in the SDK
        end_ns = tx.last_ack_ns or time.time_ns()
        own = tx.attributes()
        if self.links is not None:
            own[semconv.LAB_LINKED_TRANSACTIONS] = len(self.links)
        attributes: Mapping[str, Any] = own
        if self.sampler_attributes:
            attributes = {**self.sampler_attributes, **attributes}
        event_attributes: Sequence[Mapping[str, Any]] = tx.event_attributes()
        sinks = _sinks(self.tracer)
        if sinks is None or _limited(self.tracer._span_limits, attributes, event_attributes):
            # what the SDK would cut, cut as it does: one ReadableSpan for every processor
            self.tracer.span_processor.on_end(
                self._readable(tx, end_ns, attributes, event_attributes))
            return
        rows, others = sinks
        if rows and self.flags & trace.TraceFlags.SAMPLED:  # batch processors skip the rest
            row = self._row(tx, end_ns, attributes, event_attributes)
            for sink in rows:
                sink.emit_row(row)
        if others:
            readable = self._readable(tx, end_ns, attributes, event_attributes)
            for processor in others:
                processor.on_end(readable)

    def _row(self, tx: TxSendSpan, end_ns: int, attributes: Mapping[str, Any],
             event_attributes: Sequence[Mapping[str, Any]]) -> SpanRow:
        """The span store row `span_to_row` would make of `_readable`'s span, without it
        (tests/unit/test_tracing_batch.py checks they are equal)."""
        status = tx.status()
        tracer = self.tracer
        return span_row(
            self.trace_hex, self.span_hex,
            f"{self.parent.span_id:016x}" if self.parent.is_valid else None,
            tx.name(), _KIND_NAME, tracer.resource, self.start_ns, end_ns,
            _STATUS_ERROR if status is not None else _STATUS_UNSET,
            status.description if status is not None else None,
            attributes_json(attributes), events_json(EVENT_NAME, end_ns, event_attributes),
            tracer._instrumentation_scope.name,
            links_json([(t, s) for _, t, s in self.links]) if self.links else "[]",
        )

    def _readable(self, tx: TxSendSpan, end_ns: int, attributes: Mapping[str, Any],
                  event_attributes: Sequence[Mapping[str, Any]]) -> ReadableSpan:
        tracer = self.tracer
        limits = tracer._span_limits  # applied only where they cut something, as the SDK
        if limits.max_span_attribute_length is not None or \
                len(attributes) > (limits.max_span_attributes or len(attributes)):
            attributes = BoundedAttributes(limits.max_span_attributes, attributes,
                                           immutable=False,
                                           max_value_len=limits.max_span_attribute_length)
        most = limits.max_event_attributes  # None: no limit
        if limits.max_attribute_length is not None or (
                most is not None and any(len(a) > most for a in event_attributes)):
            longest = limits.max_attribute_length
            event_attributes = [BoundedAttributes(most, a, max_value_len=longest)
                                for a in event_attributes]
        events: Sequence[Event] = [Event(EVENT_NAME, a, end_ns) for a in event_attributes]
        if limits.max_events is not None and len(events) > limits.max_events:
            events = BoundedList.from_seq(limits.max_events, events)
        return ReadableSpan(
            name=tx.name(), context=self._context(), parent=self.parent if self.parent.is_valid
            else None, resource=tracer.resource, attributes=attributes, events=events,
            links=[Link(context) for context, _, _ in self.links] if self.links else (),
            kind=_KIND, status=tx.status() or _UNSET, start_time=self.start_ns,
            end_time=end_ns, instrumentation_scope=tracer._instrumentation_scope,
        )


# -- the span budget per window -----------------------------------------------------------


def _ignore(*_: Any) -> None:
    """A callback with nothing to do (a window span's own delivery, an unrecorded end)."""


class LinkedTx:
    """A transaction over its window's budget: its records carry its own context and are
    counted in the shared window span; their acknowledgements go straight to the
    transaction's ticket (`delivered` is the ticket's callback: no per-record tracing
    work), so the window span ends when its window does, with the records handed to the
    producer, not acknowledged (tracing/batch.py `TxSpans`, docs/tracing.md)."""

    __slots__ = ("add", "delivered", "headers", "span")
    linked = True

    def __init__(self, span: TxSendSpan, headers: list[tuple[str, bytes]],
                 on_delivered: Callable[[Any, Any], None]) -> None:
        self.span = span
        self.headers = headers
        self.add: Callable[..., None] = span.count  # (topic, table)
        self.delivered = on_delivered

    def seal(self) -> None:
        """The window span is sealed by `TxSpans.new_window`, not per transaction."""


class TxSpans:
    """`start_tx_span` within a budget of `per_window` own spans per window (0: no limit);
    `new_window` starts the next window and seals the shared span of the last."""

    def __init__(self, tracer: trace.Tracer, per_window: int) -> None:
        self.tracer = tracer
        self.per_window = per_window
        self.started = 0  # sampled transactions of this window
        self.linked = 0  # of those, linked to a window span (tests read it)
        self._shared: TxSendSpan | None = None
        self._maker: _SdkTxSpan | None = None

    def start(self, parent: Context,
              on_delivered: Callable[[Any, Any], None]) -> TxSendSpan | LinkedTx:
        if not self.per_window:
            return start_tx_span(self.tracer, parent, on_delivered)
        real = _enabled_sdk(self.tracer)
        if real is None:
            return _start_api(self.tracer, parent, on_delivered)
        context = trace.get_current_span(parent).get_span_context()
        if not (context.is_valid and context.trace_flags.sampled):
            return _SdkTxSpan(real, parent).start(on_delivered)  # records nothing anyway
        self.started += 1
        if self.started <= self.per_window:
            return _SdkTxSpan(real, parent).start(on_delivered)
        trace_hex, span_hex = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        headers = traceparent_headers(trace_hex, span_hex, context.trace_flags,
                                      context.trace_state) if traceparent_direct(parent) \
            else kafka_trace_headers(None, parent)  # the transaction's context, unchanged
        maker = self._maker
        if maker is None or maker.links is None or \
                len(maker.links) >= (real._span_limits.max_links or 1 << 30):
            maker = self._open(real)
            if maker is None:  # the sampler did not record the window span: pass on only
                return TxSendSpan(headers, on_delivered, False, _ignore)
        assert maker.links is not None and self._shared is not None
        maker.links.append((context, trace_hex, span_hex))
        self.linked += 1
        return LinkedTx(self._shared, headers, on_delivered)

    def _open(self, real: SdkTracer) -> _SdkTxSpan | None:
        self._seal()
        maker = _SdkTxSpan(real, Context())  # a root: a trace of its own, as the worker's
        if maker.sampler_attributes is None:
            return None
        maker.links = []
        self._maker = maker
        self._shared = TxSendSpan([], _ignore, True, maker._end)
        return maker

    def _seal(self) -> None:
        if self._shared is not None:
            self._shared.seal()
        self._shared = self._maker = None

    def new_window(self) -> None:
        """The producer was polled: the next transactions get their own spans again."""
        self.started = 0
        self._seal()


def _limited(limits: SpanLimits, attributes: Mapping[str, Any],
             event_attributes: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the tracer's SpanLimits would change this span (`_readable` applies them)."""
    most = limits.max_event_attributes
    return (limits.max_span_attribute_length is not None
            or len(attributes) > (limits.max_span_attributes or len(attributes))
            or limits.max_attribute_length is not None
            or (most is not None and any(len(a) > most for a in event_attributes))
            or (limits.max_events is not None and len(event_attributes) > limits.max_events))


# the provider's processors split into span store row sinks and the rest, for the last
# processors tuple seen (the provider replaces the tuple when a processor is added)
_split: tuple[Any, tuple[Any, Any] | None] = (None, None)


def _sinks(tracer: SdkTracer) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """(processors taking SpanRows, other processors) of the tracer's provider; None when
    its processor is not the SDK's synchronous multi-processor (then every span goes
    through `span_processor.on_end` as a ReadableSpan)."""
    global _split
    multi = tracer.span_processor
    processors = getattr(multi, "_span_processors", None)
    if type(multi) is not SynchronousMultiSpanProcessor or processors is None:
        return None
    if _split[0] is not processors:
        rows = tuple(p for p in processors if getattr(p, "takes_rows", False))
        _split = (processors, (rows, tuple(p for p in processors if p not in rows)))
    return _split[1]


# -- any other tracer (the API's no-op one when tracing is off) --------------------------


def _start_api(tracer: trace.Tracer, parent: Context,
               on_delivered: Callable[[Any, Any], None]) -> TxSendSpan:
    span = tracer.start_span(SPAN_NAME, context=parent, kind=_KIND)
    span_context = span.get_span_context()
    # a disabled tracer gives an invalid span: then pass the origin's context on as is
    carrier = trace.set_span_in_context(span, parent) if span_context.is_valid else parent
    headers = kafka_trace_headers(None, carrier)

    def end(tx: TxSendSpan) -> None:
        if tx.recording:
            span.update_name(tx.name())
            span.set_attributes(tx.attributes())
            for attributes in tx.event_attributes():
                span.add_event(EVENT_NAME, attributes, timestamp=tx.last_ack_ns or None)
            status = tx.status()
            if status is not None:
                span.set_status(status)
        span.end(end_time=tx.last_ack_ns or None)

    recording = span.is_recording() and not isinstance(span, NonRecordingSpan)
    return TxSendSpan(headers, on_delivered, recording, end)
