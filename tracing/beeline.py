"""The Honeycomb beeline header (`X-Honeycomb-Trace`), in and out.

Services still instrumented with a beeline send and expect
`X-Honeycomb-Trace: 1;trace_id=...,parent_id=...,context=<base64 json>`. The
header is parsed and built with honeycomb-beeline's own functions
(`beeline.propagation.honeycomb`), so we follow whatever the beeline does.

Trace id mapping (deterministic, documented in docs/tracing.md):

1. dashes are removed and the id is lower-cased (a UUID becomes 32 hex digits);
2. 32 hex digits (not all zero) are used as they are;
3. fewer hex digits (a 64-bit id, say) are left-padded with zeros to 32;
4. anything else (not hex, longer, all zeros) becomes the first 16 bytes of
   SHA-256 of the original string, as hex.

Span (parent) ids follow the same rules with 16 hex digits / 8 bytes. When the
mapping changed the trace id, the original is kept in `tracestate` under the key
`beeline` so that `beeline_header()` hands the old service back *its* id, and so
the original can be shown as a span attribute (`beeline.trace_id`).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from beeline.propagation import PropagationContext
from beeline.propagation.honeycomb import (
    marshal_propagation_context,
    unmarshal_propagation_context_with_dataset,
)
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from base.contracts import headers
from base.contracts.traceids import beeline_hex_id

HEADER = headers.BEELINE
TRACESTATE_KEY = "beeline"
_HEX = frozenset(string.hexdigits.lower())
# W3C tracestate values: printable ASCII without ',' and '=' and at most 256 chars.
_TRACESTATE_VALUE_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {",", "="}


def otel_trace_id(beeline_trace_id: str) -> int:
    """The 128-bit OTel trace id for a beeline trace id (UUID, hex or any string)."""
    return int(beeline_hex_id(beeline_trace_id, 32), 16)


def otel_span_id(beeline_span_id: str) -> int:
    """The 64-bit OTel span id for a beeline span/parent id."""
    return int(beeline_hex_id(beeline_span_id, 16), 16)


def _header_value(headers: Mapping[str, Any]) -> str | None:
    for key, value in headers.items():
        if key.lower() != HEADER.lower():
            continue
        if isinstance(value, bytes | bytearray):
            try:
                return bytes(value).decode("ascii")
            except UnicodeDecodeError:
                return None
        return str(value)
    return None


def span_context_from_header(header: str) -> SpanContext | None:
    """The remote SpanContext for one `X-Honeycomb-Trace` value, None if unusable."""
    try:
        trace_id, parent_id, _fields, _dataset = unmarshal_propagation_context_with_dataset(header)
    except (ValueError, TypeError):  # malformed base64/json/pairs inside the beeline parser
        return None
    if not trace_id or not parent_id:
        return None
    state = TraceState()
    original = str(trace_id)
    if (
        format(otel_trace_id(original), "032x") != original
        and len(original) <= 256
        and set(original) <= _TRACESTATE_VALUE_CHARS
    ):
        state = state.add(TRACESTATE_KEY, original)
    return SpanContext(
        trace_id=otel_trace_id(original),
        span_id=otel_span_id(str(parent_id)),
        is_remote=True,
        # beelines sample at the head and only propagate sampled traces
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=state,
    )


def extract_beeline(headers: Mapping[str, Any], context: Context | None = None) -> Context | None:
    """A Context continuing the beeline trace in `headers`, None when there is none."""
    value = _header_value(headers)
    if value is None:
        return None
    span_context = span_context_from_header(value)
    if span_context is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(span_context), context)


def beeline_trace_fields(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The beeline's propagated trace fields (its `context=`), {} when absent or malformed."""
    value = _header_value(headers)
    if value is None:
        return {}
    try:
        _tid, _pid, fields, _dataset = unmarshal_propagation_context_with_dataset(value)
    except (ValueError, TypeError):
        return {}
    return dict(fields) if isinstance(fields, dict) else {}


def original_trace_id(span_context: SpanContext) -> str:
    """The id a beeline knows this trace by: the kept original, else the 32-hex id."""
    kept = span_context.trace_state.get(TRACESTATE_KEY)
    return kept or format(span_context.trace_id, "032x")


def beeline_header(context: Context | None = None) -> str | None:
    """`X-Honeycomb-Trace` value for the current (or given) span, None without one."""
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return None
    propagation = PropagationContext(
        original_trace_id(span_context), format(span_context.span_id, "016x"), {}
    )
    return marshal_propagation_context(propagation)


def inject_beeline(carrier: dict[str, str], context: Context | None = None) -> dict[str, str]:
    """Add `X-Honeycomb-Trace` to an outgoing HTTP header dict (unchanged without a span)."""
    value = beeline_header(context)
    if value is not None:
        carrier[HEADER] = value
    return carrier
