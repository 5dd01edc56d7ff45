"""X-Honeycomb-Trace in and out, and the beeline -> OTel id mapping."""

from __future__ import annotations

import hashlib

from beeline.propagation import PropagationContext
from beeline.propagation.honeycomb import marshal_propagation_context
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace

from tracing import beeline
from tracing.propagation import extract_http_headers


def header(trace_id: str, parent_id: str, fields: dict | None = None) -> str:
    return marshal_propagation_context(PropagationContext(trace_id, parent_id, fields or {}))


def span_context_of(headers: dict):
    return trace.get_current_span(extract_http_headers(headers)).get_span_context()


def test_a_w3c_compatible_beeline_id_is_kept_as_is() -> None:
    value = header("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    span_context = span_context_of({"X-Honeycomb-Trace": value})
    assert format(span_context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert format(span_context.span_id, "016x") == "00f067aa0ba902b7"
    assert span_context.is_remote and span_context.trace_flags.sampled
    assert beeline.TRACESTATE_KEY not in span_context.trace_state


def test_a_uuid_trace_id_loses_its_dashes_and_is_kept_in_tracestate() -> None:
    uuid = "5B0A1C2D-3E4F-4A5B-8C6D-7E8F9A0B1C2D"
    span_context = span_context_of({"x-honeycomb-trace": header(uuid, "abcdef0123456789")})
    assert format(span_context.trace_id, "032x") == "5b0a1c2d3e4f4a5b8c6d7e8f9a0b1c2d"
    assert span_context.trace_state.get("beeline") == uuid


def test_a_short_hex_id_is_left_padded() -> None:
    assert beeline.otel_trace_id("abc123") == 0xABC123
    assert beeline.otel_span_id("1f") == 0x1F


def test_a_non_hex_id_is_hashed_deterministically() -> None:
    expected = int(hashlib.sha256(b"order-42").hexdigest()[:32], 16)
    assert beeline.otel_trace_id("order-42") == expected
    assert beeline.otel_trace_id("order-42") == expected  # same input, same id
    assert beeline.otel_trace_id("0" * 32) != 0  # an all-zero id is invalid in OTel


@given(st.text(min_size=1, max_size=80))
def test_any_beeline_id_maps_to_a_valid_otel_id(raw: str) -> None:
    assert 0 < beeline.otel_trace_id(raw) < 2**128
    assert 0 < beeline.otel_span_id(raw) < 2**64


def test_the_same_beeline_trace_comes_back_out_unchanged() -> None:
    uuid = "5b0a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    context = extract_http_headers({"X-Honeycomb-Trace": header(uuid, "abcdef0123456789")})
    outgoing = beeline.beeline_header(context)
    assert outgoing is not None
    assert outgoing.startswith(f"1;trace_id={uuid},parent_id=abcdef0123456789,")


def test_beeline_trace_fields_are_readable() -> None:
    value = header("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", {"user": "ada"})
    assert beeline.beeline_trace_fields({"X-Honeycomb-Trace": value}) == {"user": "ada"}


def test_malformed_beeline_headers_start_no_trace() -> None:
    for value in ["", "1;", "2;trace_id=a,parent_id=b", "1;trace_id=a,context=!!!", "garbage"]:
        assert not span_context_of({"X-Honeycomb-Trace": value}).is_valid, value


def test_no_header_out_without_a_span() -> None:
    assert beeline.beeline_header() is None
    assert beeline.inject_beeline({}) == {}
