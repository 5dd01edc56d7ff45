"""The batch PRODUCER span without the SDK's Span object: the same span, the same headers.

`start_tx_span` builds the span of an SDK tracer itself (ids, sampling, one ReadableSpan
at the end); `_start_api` is the plain OpenTelemetry API path. Both are fed the same
records and acknowledgements here and must give the same span and headers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import Message
from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracing import batch, beeline, propagation
from tracing.batch import TxSendSpan, start_tx_span
from tracing.propagation import context_from_db_messages, inject_headers, kafka_trace_headers
from tracing.setup import build_resource
from tracing.spanstore import COLUMNS, span_to_row

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def _origin(flags: str = "01", tracestate: str | None = None) -> Any:
    fields = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-{flags}"}
    if tracestate:
        fields["tracestate"] = tracestate
    return context_from_db_messages(fields)


def _provider(**kwargs: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=build_resource("labstream-cdc"), **kwargs)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _drive(tx: TxSendSpan, acked: list[Any]) -> None:
    """Two topics, three partitions, seven records, acknowledged out of partition order."""
    where = [("lab.a", 0, 10), ("lab.a", 1, 3), ("lab.a", 0, 11), ("lab.a", 0, 12),
             ("lab.a", 1, 4), ("lab.b", 0, 7), ("lab.b", 0, 8)]
    for topic, _, _ in where:
        tx.add(topic, "public.runs", "c")
    tx.seal()
    for topic, partition, offset in where:
        tx.delivered(None, Message(topic=topic, partition=partition, offset=offset))
    assert len(acked) == 7  # every acknowledgement reached the ticket's callback


def _both_paths(provider: TracerProvider, exporter: InMemorySpanExporter,
                origin: Any) -> tuple[ReadableSpan, ReadableSpan]:
    tracer = provider.get_tracer("labstream.cdc")
    spans = []
    for start in (start_tx_span, batch._start_api):
        acked: list[Any] = []
        tx = start(tracer, origin, lambda err, msg, acked=acked: acked.append(msg))
        _drive(tx, acked)
        (span,) = exporter.get_finished_spans()
        exporter.clear()
        spans.append(span)
    return spans[0], spans[1]


def _same_span(direct: ReadableSpan, api: ReadableSpan) -> None:
    assert direct.name == api.name and direct.kind == api.kind == SpanKind.PRODUCER
    assert direct.context.trace_id == api.context.trace_id
    assert direct.context.trace_flags == api.context.trace_flags
    assert direct.context.trace_state == api.context.trace_state
    assert direct.parent == api.parent
    assert dict(direct.attributes) == dict(api.attributes)
    assert [(e.name, dict(e.attributes)) for e in direct.events] == \
        [(e.name, dict(e.attributes)) for e in api.events]
    assert (direct.status.status_code, direct.status.description) == \
        (api.status.status_code, api.status.description)
    assert direct.resource is api.resource
    assert direct.instrumentation_scope == api.instrumentation_scope
    assert direct.dropped_attributes == api.dropped_attributes
    assert direct.dropped_events == api.dropped_events
    assert direct.start_time <= direct.end_time
    assert direct.events[0].timestamp == direct.end_time
    # and the span store row (what `labstream trace` shows) matches but for ids and times
    ignored = {"span_id", "start_time_unix_nano", "end_time_unix_nano", "events"}
    rows = [dict(zip(COLUMNS, span_to_row(s), strict=True)) for s in (direct, api)]
    assert {k: v for k, v in rows[0].items() if k not in ignored} == \
        {k: v for k, v in rows[1].items() if k not in ignored}


def test_the_direct_span_is_the_span_the_api_path_makes() -> None:
    provider, exporter = _provider()
    direct, api = _both_paths(provider, exporter, _origin(tracestate="vendor=1"))
    _same_span(direct, api)
    assert direct.name == "send" and direct.attributes["messaging.batch.message_count"] == 7
    assert direct.attributes["lab.topics"] == ("lab.a", "lab.b")
    events = {(e.attributes["messaging.destination.name"],
               e.attributes["messaging.destination.partition.id"]):
              (e.attributes["messaging.kafka.offset"], e.attributes["lab.kafka.offset.last"],
               e.attributes["messaging.batch.message_count"]) for e in direct.events}
    assert events == {("lab.a", "0"): (10, 12, 3), ("lab.a", "1"): (3, 4, 2),
                      ("lab.b", "0"): (7, 8, 2)}
    assert format(direct.parent.span_id, "016x") == PARENT_ID
    assert direct.context.trace_state.to_header() == "vendor=1"


def test_offsets_acknowledged_out_of_order_still_give_first_and_last() -> None:
    provider, exporter = _provider()
    acked: list[Any] = []
    tx = start_tx_span(provider.get_tracer("t"), _origin(), lambda err, msg: acked.append(msg))
    for _ in range(3):
        tx.add("lab.a")
    tx.seal()
    for offset in (21, 20, 22):
        tx.delivered(None, Message(topic="lab.a", partition=2, offset=offset))
    (span,) = exporter.get_finished_spans()
    assert (span.attributes["messaging.kafka.offset"], span.attributes["lab.kafka.offset.last"]) \
        == (20, 22)
    assert span.name == "send lab.a"
    assert span.attributes["messaging.destination.partition.id"] == "2"


def test_a_failed_record_makes_the_same_error_span_on_both_paths() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    spans = []
    for start in (start_tx_span, batch._start_api):
        tx = start(tracer, _origin(), lambda err, msg: None)
        tx.add("lab.a")
        tx.add("lab.a")
        tx.seal()
        tx.delivered("broker said no", None)
        tx.delivered(None, Message(topic="lab.a", partition=0, offset=5))
        (span,) = exporter.get_finished_spans()
        exporter.clear()
        spans.append(span)
    _same_span(*spans)
    assert spans[0].status.status_code.name == "ERROR"
    assert spans[0].status.description == "broker said no"


def test_span_limits_apply_as_the_sdk_applies_them() -> None:
    limits = SpanLimits(max_events=2, max_attribute_length=4, max_span_attribute_length=5)
    provider, exporter = _provider(span_limits=limits)
    direct, api = _both_paths(provider, exporter, _origin())
    _same_span(direct, api)
    assert len(direct.events) == 2 and direct.dropped_events == 1
    assert direct.attributes["lab.table"] == "publi"  # truncated to 5
    assert direct.events[0].attributes["messaging.destination.name"] == "lab."  # to 4


class _TaggingSampler(Sampler):
    """Samples everything, adds an attribute and a tracestate entry (as vendor samplers do)."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                      links=None, trace_state=None) -> SamplingResult:
        state = trace.get_current_span(parent_context).get_span_context().trace_state
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampler.rule": "all"},
                              state.add("ours", "x"))

    def get_description(self) -> str:
        return "tagging"


@pytest.mark.parametrize("sampler", [None, ALWAYS_OFF, ParentBased(TraceIdRatioBased(0)),
                                     _TaggingSampler()], ids=["default", "always_off",
                                                              "parent_ratio0", "tagging"])
@pytest.mark.parametrize("flags", ["01", "00"])
def test_the_configured_sampler_decides_as_for_any_span(sampler: Sampler | None,
                                                        flags: str) -> None:
    """The default parentbased_always_on is decided without calling it: the parent's flag."""
    provider, exporter = _provider(**({"sampler": sampler} if sampler else {}))
    tracer = provider.get_tracer("t")
    origin = _origin(flags, tracestate="vendor=1")
    reference = tracer.start_span("send", context=origin, kind=SpanKind.PRODUCER)
    tx = start_tx_span(tracer, origin, lambda err, msg: None)
    tx.add("lab.a")
    tx.seal()
    tx.delivered(None, Message(topic="lab.a", partition=0, offset=1))
    traceparent = dict(tx.headers)["traceparent"].decode()
    assert traceparent.startswith(f"00-{TRACE_ID}-") and not traceparent.endswith(PARENT_ID)
    expected = reference.get_span_context()
    assert traceparent.endswith(f"-{expected.trace_flags:02x}")
    assert dict(tx.headers).get("tracestate", b"").decode() == expected.trace_state.to_header()
    assert tx.recording is reference.is_recording()
    spans = exporter.get_finished_spans()
    if expected.trace_flags.sampled:
        (span,) = spans
        assert span.context.trace_state == expected.trace_state
        assert dict(reference.attributes).items() <= span.attributes.items()
    else:
        assert spans == ()


def test_without_an_sdk_tracer_the_origin_context_is_passed_on() -> None:
    acked: list[Any] = []
    tx = start_tx_span(trace.NoOpTracer(), _origin(), lambda err, msg: acked.append(msg))
    assert not tx.recording
    assert dict(tx.headers)["traceparent"] == f"00-{TRACE_ID}-{PARENT_ID}-01".encode()
    tx.add("lab.a")
    tx.seal()
    tx.delivered(None, Message(topic="lab.a", partition=0, offset=1))
    assert len(acked) == 1 and tx.ended


@pytest.fixture
def labstream_propagator(monkeypatch: pytest.MonkeyPatch) -> Any:
    textmap = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    monkeypatch.setattr(propagate, "_HTTP_TEXT_FORMAT", textmap)
    monkeypatch.setattr(propagation, "_default_textmap", textmap)
    assert propagate.get_global_textmap() is textmap
    return textmap


@pytest.mark.parametrize("flags", [0x00, 0x01, 0x03])
@pytest.mark.parametrize("state", [None, "a=1,b=2"])
def test_headers_written_directly_are_what_the_propagator_writes(
        labstream_propagator: Any, flags: int, state: str | None) -> None:
    span_context = SpanContext(int(TRACE_ID, 16), 0x00F067AA0BA902B7, is_remote=False,
                               trace_flags=TraceFlags(flags),
                               trace_state=TraceState.from_header([state]) if state else None)
    origin = _origin()
    expected = inject_headers([], context=trace.set_span_in_context(
        NonRecordingSpan(span_context), origin))
    assert kafka_trace_headers(span_context, origin) == expected
    assert expected[0] == ("traceparent",
                           f"00-{TRACE_ID}-00f067aa0ba902b7-{flags:02x}".encode())


def test_baggage_or_beeline_headers_take_the_propagators_path(
        labstream_propagator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    span_context = SpanContext(int(TRACE_ID, 16), 0x00F067AA0BA902B7, is_remote=False,
                               trace_flags=TraceFlags(1))
    with_baggage = baggage.set_baggage("tenant", "t1", context=_origin())
    assert dict(kafka_trace_headers(span_context, with_baggage))["baggage"] == b"tenant=t1"
    monkeypatch.setattr(propagation, "_beeline_outbound", True)
    headers = kafka_trace_headers(span_context, _origin())
    assert headers == inject_headers([], context=trace.set_span_in_context(
        NonRecordingSpan(span_context), _origin()))
    assert beeline.HEADER in dict(headers)


def test_an_event_attribute_count_limit_applies_as_the_sdk_applies_it() -> None:
    provider, exporter = _provider(span_limits=SpanLimits(max_event_attributes=3))
    direct, api = _both_paths(provider, exporter, _origin())
    _same_span(direct, api)
    assert all(len(event.attributes) == 3 for event in direct.events)


def test_the_sdk_internals_the_direct_path_reads_are_there() -> None:
    """An SDK upgrade that moves them fails here, not in the connector's first traced
    transaction (start_tx_span reads them)."""
    provider, _ = _provider()
    tracer = provider.get_tracer("t")
    assert isinstance(tracer._span_limits, SpanLimits)
    assert tracer._instrumentation_scope.name == "t"
    assert tracer._is_enabled() is True
    proxy = trace.ProxyTracer("t")
    assert isinstance(proxy._tracer, trace.Tracer)


class _RowSink:
    """A processor taking span store rows (as CountingBatchSpanProcessor over the span
    store does); a ReadableSpan given to it is kept apart."""

    takes_rows = True

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.spans: list[ReadableSpan] = []

    def emit_row(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _with_row_sink(**kwargs: Any) -> tuple[TracerProvider, _RowSink, InMemorySpanExporter]:
    provider, exporter = _provider(**kwargs)  # the in-memory one stands for OTLP
    sink = _RowSink()
    provider.add_span_processor(sink)
    return provider, sink, exporter


@pytest.mark.parametrize("error", [None, "Broker: Message size too large\x00"])
@pytest.mark.parametrize("tracestate", [None, "vendor=1"])
def test_the_row_built_directly_is_the_row_of_the_readable_span(error: str | None,
                                                                  tracestate: str | None) -> None:
    """Same span, both sinks: the span store gets the row `span_to_row` makes of the
    ReadableSpan the other processors get, column for column (ids and times too)."""
    provider, sink, exporter = _with_row_sink()
    acked: list[Any] = []
    tx = start_tx_span(provider.get_tracer("labstream.cdc"), _origin(tracestate=tracestate),
                       lambda err, msg: acked.append(msg))
    if error is None:
        _drive(tx, acked)
    else:
        tx.add("lab.a", "public.runs", "u")
        tx.seal()
        tx.delivered(error, None)
    (span,) = exporter.get_finished_spans()
    assert sink.spans == []  # the row sink got no ReadableSpan
    (row,) = sink.rows
    assert row == span_to_row(span)
    assert dict(zip(COLUMNS, row, strict=True))["parent_span_id"] == PARENT_ID


def test_with_only_the_span_store_no_readable_span_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = TracerProvider(resource=build_resource("labstream-cdc"))
    sink = _RowSink()
    provider.add_span_processor(sink)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a ReadableSpan was made")

    monkeypatch.setattr(batch, "ReadableSpan", refuse)
    acked: list[Any] = []
    tx = start_tx_span(provider.get_tracer("labstream.cdc"), _origin(),
                       lambda err, msg: acked.append(msg))
    _drive(tx, acked)
    assert len(sink.rows) == 1 and sink.rows[0][3] == "send"


def test_an_unsampled_parent_gives_no_row() -> None:
    provider, sink, exporter = _with_row_sink()
    tx = start_tx_span(provider.get_tracer("t"), _origin(flags="00"), lambda err, msg: None)
    tx.add("lab.a")
    tx.seal()
    tx.delivered(None, Message(topic="lab.a", partition=0, offset=1))
    assert tx.headers[0][1].endswith(b"-00")
    assert (sink.rows, sink.spans, exporter.get_finished_spans()) == ([], [], ())


def test_limits_that_cut_the_span_give_every_processor_the_cut_readable_span() -> None:
    provider, sink, exporter = _with_row_sink(span_limits=SpanLimits(max_span_attributes=2))
    acked: list[Any] = []
    tx = start_tx_span(provider.get_tracer("t"), _origin(), lambda err, msg: acked.append(msg))
    _drive(tx, acked)
    (span,) = exporter.get_finished_spans()
    assert sink.rows == [] and sink.spans == [span]
    assert len(span.attributes) == 2 and span.dropped_attributes > 0


def test_a_processor_added_later_is_seen() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    for _ in range(2):  # the split of the processors is cached: a new tuple must renew it
        start_tx_span(tracer, _origin(), lambda err, msg: None).seal()
    sink = _RowSink()
    provider.add_span_processor(sink)
    start_tx_span(tracer, _origin(), lambda err, msg: None).seal()
    assert len(exporter.get_finished_spans()) == 3 and len(sink.rows) == 1


# -- the span budget per window (TxSpans) ---------------------------------------------------


def _tx_origin(n: int, flags: str = "01") -> Any:
    return context_from_db_messages({"traceparent": f"00-{n:032x}-{n:016x}-{flags}"})


def _run_tx(spans: batch.TxSpans, n: int, acked: list[Any], offset: int,
            flags: str = "01") -> Any:
    """One single-row transaction through the budget, acknowledged at `offset`."""
    tx = spans.start(_tx_origin(n, flags), lambda err, msg: acked.append(msg))
    tx.add("lab.a", "public.runs", "c")
    tx.seal()
    tx.delivered(None, Message(topic="lab.a", partition=0, offset=offset))
    return tx


def test_over_the_budget_transactions_share_one_window_span_linked_to_each() -> None:
    provider, sink, exporter = _with_row_sink()
    spans = batch.TxSpans(provider.get_tracer("labstream.cdc"), 2)
    acked: list[Any] = []
    txs = [_run_tx(spans, n, acked, offset=100 + n) for n in range(1, 6)]
    assert len(acked) == 5  # every record's ticket heard its acknowledgement
    # own spans for the first two, children of their transactions' contexts
    own = exporter.get_finished_spans()
    assert [s.context.trace_id for s in own] == [1, 2]
    assert [s.parent.span_id for s in own if s.parent] == [1, 2]
    # the other three carry their own context on, unchanged: each trace goes on
    for n, tx in zip(range(3, 6), txs[2:], strict=True):
        assert dict(tx.headers)["traceparent"] == f"00-{n:032x}-{n:016x}-01".encode()
    assert len(exporter.get_finished_spans()) == 2  # the window span ends with the window
    spans.new_window()
    window = exporter.get_finished_spans()[2]
    assert window.parent is None and window.context.trace_id not in (1, 2, 3, 4, 5)
    assert [(link.context.trace_id, link.context.span_id) for link in window.links] == \
        [(3, 3), (4, 4), (5, 5)]
    assert window.attributes["lab.linked_transactions"] == 3
    assert window.attributes["messaging.batch.message_count"] == 3
    assert window.attributes["messaging.destination.name"] == "lab.a"
    assert window.name == "send lab.a"
    # the linked records' acknowledgements went to their tickets only: no offsets
    assert "messaging.kafka.offset" not in window.attributes and not window.events
    # the span store's row of it is the row of the ReadableSpan, links column included
    assert len(sink.rows) == 3
    assert tuple(sink.rows[2]) == span_to_row(window)
    assert json.loads(sink.rows[2][COLUMNS.index("links")]) == [
        {"trace_id": f"{n:032x}", "span_id": f"{n:016x}", "attributes": {}} for n in (3, 4, 5)]


def test_a_new_window_gives_own_spans_again() -> None:
    provider, _, exporter = _with_row_sink()
    spans = batch.TxSpans(provider.get_tracer("t"), 1)
    acked: list[Any] = []
    _run_tx(spans, 1, acked, 1)
    _run_tx(spans, 2, acked, 2)  # linked
    spans.new_window()
    _run_tx(spans, 3, acked, 3)  # own again
    finished = exporter.get_finished_spans()
    assert [len(s.links) for s in finished] == [0, 1, 0]
    assert finished[2].parent is not None and finished[2].parent.span_id == 3


def test_the_window_span_ends_with_its_window_and_acks_go_straight_to_the_ticket() -> None:
    provider, _, exporter = _with_row_sink()
    spans = batch.TxSpans(provider.get_tracer("t"), 1)
    spans.start(_tx_origin(1), lambda err, msg: None).seal()
    acked: list[Any] = []
    ticket = acked.append  # stands for TxTicket.delivered

    def delivered(err: Any, msg: Any) -> None:
        ticket(msg)

    linked = spans.start(_tx_origin(2), delivered)
    assert linked.delivered is delivered  # the producer calls the ticket, nothing between
    linked.add("lab.a")
    linked.seal()
    assert len(exporter.get_finished_spans()) == 1  # the window is still open
    spans.new_window()
    # the window span ends with the window, its record handed to the producer
    assert len(exporter.get_finished_spans()) == 2
    message = Message(topic="lab.a", partition=0, offset=7)
    linked.delivered(None, message)
    assert acked == [message] and len(exporter.get_finished_spans()) == 2


def test_unsampled_transactions_use_no_budget_and_get_no_link() -> None:
    provider, _, exporter = _with_row_sink()
    spans = batch.TxSpans(provider.get_tracer("t"), 1)
    acked: list[Any] = []
    for n in range(1, 4):
        tx = _run_tx(spans, n, acked, n, flags="00")
        assert dict(tx.headers)["traceparent"].endswith(b"-00")
    _run_tx(spans, 9, acked, 9)  # the first sampled one: its own span
    spans.new_window()
    assert [s.context.trace_id for s in exporter.get_finished_spans()] == [9]
    assert spans.linked == 0


def test_a_window_span_never_holds_more_links_than_the_limit() -> None:
    provider, _, exporter = _with_row_sink(span_limits=SpanLimits(max_links=2))
    spans = batch.TxSpans(provider.get_tracer("t"), 1)
    acked: list[Any] = []
    for n in range(1, 7):  # one own span, five linked: windows spans of 2, 2, 1 links
        _run_tx(spans, n, acked, n)
    spans.new_window()
    finished = exporter.get_finished_spans()
    assert [len(s.links) for s in finished] == [0, 2, 2, 1]
    assert sum(s.dropped_links for s in finished) == 0


def test_budget_zero_gives_every_transaction_its_own_span() -> None:
    provider, _, exporter = _with_row_sink()
    spans = batch.TxSpans(provider.get_tracer("t"), 0)
    acked: list[Any] = []
    for n in range(1, 11):
        _run_tx(spans, n, acked, n)
    spans.new_window()
    assert [s.context.trace_id for s in exporter.get_finished_spans()] == list(range(1, 11))


def test_with_tracing_off_the_budget_passes_the_context_on() -> None:
    spans = batch.TxSpans(trace.NoOpTracer(), 1)
    acked: list[Any] = []
    for n in range(1, 4):
        tx = _run_tx(spans, n, acked, n)
        assert dict(tx.headers)["traceparent"] == f"00-{n:032x}-{n:016x}-01".encode()
    assert spans.linked == 0 and len(acked) == 3
