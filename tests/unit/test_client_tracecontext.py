"""labstream_client's trace context agrees with labstream's own propagation
(tracing.propagation / tracing.beeline) for every header a record can carry."""

from __future__ import annotations

import pytest
from labstream_client import otel_context, trace_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tracing import beeline
from tracing.propagation import extract_headers

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def span_of(context: object) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()  # type: ignore[arg-type]


def test_w3c_headers_from_kafka_tuples_and_faust_mappings() -> None:
    for headers in ([("traceparent", TRACEPARENT.encode()), ("tracestate", b"lab=1")],
                    {"TraceParent": TRACEPARENT.encode(), "tracestate": b"lab=1"}):
        found = trace_context(headers)
        assert found is not None
        assert (found.trace_id, found.span_id, found.sampled) == (
            "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
        assert found.traceparent == TRACEPARENT and found.tracestate == "lab=1"
        assert found.origin == "traceparent"


@pytest.mark.parametrize("value", [
    "1;trace_id=4bf92f35-77b3-4da6-a3ce-929d0e0e4736,parent_id=00f067aa0ba902b7",
    "1;trace_id=abc123,parent_id=77,context=e30=",
    "1;trace_id=not-hex-at-all,parent_id=span one,dataset=lab",
])
def test_beeline_header_maps_ids_as_labstreams_tracing_does(value: str) -> None:
    found = trace_context([("X-Honeycomb-Trace", value.encode())])
    theirs = beeline.span_context_from_header(value)
    assert found is not None and theirs is not None
    assert int(found.trace_id, 16) == theirs.trace_id
    assert int(found.span_id, 16) == theirs.span_id
    assert found.origin == "x-honeycomb-trace" and found.sampled


def test_w3c_wins_over_the_beeline_header_as_in_labstream() -> None:
    headers = [("x-honeycomb-trace", b"1;trace_id=abc,parent_id=def"),
               ("traceparent", TRACEPARENT.encode())]
    found = trace_context(headers)
    assert found is not None and found.origin == "traceparent"
    assert int(found.trace_id, 16) == span_of(extract_headers(headers)).trace_id


@pytest.mark.parametrize("headers", [
    None, [], [("traceparent", b"00-zz-yy-01")], [("traceparent", b"\xff\xfe")],
    [("x-honeycomb-trace", b"2;trace_id=a,parent_id=b")], [("x-honeycomb-trace", b"1;junk")],
    [("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")],
])
def test_missing_or_malformed_context_is_none_never_an_error(headers: object) -> None:
    assert trace_context(headers) is None  # type: ignore[arg-type]
    assert not span_of(otel_context(headers)).is_valid  # type: ignore[arg-type]


def test_a_subscribers_span_joins_the_records_trace() -> None:
    tracer = TracerProvider().get_tracer("subscriber")
    headers = [("traceparent", TRACEPARENT.encode())]
    with tracer.start_as_current_span("handle", context=otel_context(headers)) as span:
        own = span.get_span_context()
    assert format(own.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent is not None and span.parent.span_id == 0x00f067aa0ba902b7  # type: ignore[attr-defined]
    assert own.span_id != 0x00f067aa0ba902b7
