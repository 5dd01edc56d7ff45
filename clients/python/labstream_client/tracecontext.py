"""The trace context a record carries, so a subscriber's own spans join the trace.

labstream's connector writes W3C `traceparent` / `tracestate` headers on every record
of a traced transaction; services still on a Honeycomb beeline send
`X-Honeycomb-Trace`. `trace_context(headers)` reads either (W3C first) and
`otel_context(headers)` gives the OpenTelemetry Context to start spans under:

    with tracer.start_as_current_span("handle change", context=otel_context(headers)):
        ...

W3C parsing is OpenTelemetry's own propagator. Beeline ids are mapped to W3C ids as
labstream's tracing does (docs/tracing.md): hex ids are zero-padded, a UUID loses its
dashes, anything else becomes the first bytes of its SHA-256.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

W3C_HEADERS = ("traceparent", "tracestate")
BEELINE_HEADER = "x-honeycomb-trace"
_W3C = TraceContextTextMapPropagator()
_HEX = frozenset(string.hexdigits.lower())

Headers = Iterable[tuple[str, Any]] | Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits: the span that wrote the record
    sampled: bool
    tracestate: str | None
    origin: str  # "traceparent" or "x-honeycomb-trace"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def span_context(self) -> SpanContext:
        state = TraceState.from_header([self.tracestate]) if self.tracestate else TraceState()
        flags = TraceFlags(TraceFlags.SAMPLED if self.sampled else TraceFlags.DEFAULT)
        return SpanContext(int(self.trace_id, 16), int(self.span_id, 16), is_remote=True,
                           trace_flags=flags, trace_state=state)

    def otel_context(self, context: Context | None = None) -> Context:
        return trace.set_span_in_context(NonRecordingSpan(self.span_context()), context)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _fields(headers: Headers) -> dict[str, str]:
    """The trace headers by lower-case name (first one wins), decoded; others ignored."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    found: dict[str, str] = {}
    for name, value in pairs:
        key = _text(name)
        text = _text(value)
        if key and text is not None and key.lower() in (*W3C_HEADERS, BEELINE_HEADER):
            found.setdefault(key.lower(), text)
    return found


def _hex_id(raw: str, digits: int) -> str:
    cleaned = raw.replace("-", "").strip().lower()
    if cleaned and set(cleaned) <= _HEX and len(cleaned) <= digits:
        padded = cleaned.rjust(digits, "0")
        if int(padded, 16):
            return padded
    return hashlib.sha256(raw.encode()).hexdigest()[:digits]


def _beeline(value: str) -> TraceContext | None:
    version, _, rest = value.partition(";")
    if version != "1":
        return None
    parts = dict(item.split("=", 1) for item in rest.split(",") if "=" in item)
    trace_id, parent_id = parts.get("trace_id"), parts.get("parent_id")
    if not trace_id or not parent_id:
        return None
    # beelines sample at the head and propagate only sampled traces
    return TraceContext(_hex_id(trace_id, 32), _hex_id(parent_id, 16), True, None,
                        BEELINE_HEADER)


def trace_context(headers: Headers) -> TraceContext | None:
    """The record's trace context (W3C first, then X-Honeycomb-Trace), None if it has none
    or it is malformed (a subscriber then starts a new trace)."""
    fields = _fields(headers)
    if "traceparent" in fields:
        span = trace.get_current_span(_W3C.extract(fields)).get_span_context()
        if span.is_valid:
            return TraceContext(format(span.trace_id, "032x"), format(span.span_id, "016x"),
                                span.trace_flags.sampled, fields.get("tracestate"),
                                "traceparent")
    if BEELINE_HEADER in fields:
        return _beeline(fields[BEELINE_HEADER])
    return None


def otel_context(headers: Headers, context: Context | None = None) -> Context:
    """An OpenTelemetry Context whose parent is the record's writer span; without a
    trace context in the headers, `context` (a new trace for spans started under it)."""
    found = trace_context(headers)
    if found is None:
        return context if context is not None else Context()
    return found.otel_context(context)
