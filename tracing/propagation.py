"""Carry the trace context across every hop: Kafka headers, a DB transaction, a job's
environment, HTTP (W3C and the beeline header).

Each hop is one small inject/extract pair; extraction never raises on bad input
(a malformed or undecodable value yields an empty Context, i.e. a new trace).

- Kafka: `inject_headers(headers, context=None)` / `extract_headers(headers)` over
  `(str, bytes)` header tuples, with `KafkaHeadersGetter`/`KafkaHeadersSetter`.
- Database: `emit_db_trace_context(cursor, context=None)` writes the context as a
  transactional logical decoding message; the CDC connector reads it back with
  `context_from_db_messages({"traceparent": ..., "tracestate": ...})`.
- Jobs: `job_environment(context=None)` -> `TRACEPARENT`/`TRACESTATE`;
  inside the job `context_from_environment()` and `configure_job_logging()`.
- HTTP: `extract_http_headers(headers)` (W3C first, then `X-Honeycomb-Trace`),
  `inject_http_headers(headers, beeline=True)`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from base.contracts import headers
from tracing import beeline

log = logging.getLogger(__name__)

TRACEPARENT = headers.TRACEPARENT
TRACESTATE = headers.TRACESTATE
ENV_TRACEPARENT = headers.ENV_TRACEPARENT
ENV_TRACESTATE = headers.ENV_TRACESTATE
ENV_HONEYCOMB_TRACE = headers.ENV_HONEYCOMB_TRACE  # the X-Honeycomb-Trace value, for beeline jobs

KafkaHeaders = list[tuple[str, bytes]]
HeadersInput = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None

# The DB and job hops always speak W3C, whatever the global propagator is.
_W3C = TraceContextTextMapPropagator()

# Outbound X-Honeycomb-Trace (LABSTREAM_TRACING_BEELINE_HEADERS), set by configure_tracing:
# read per record, so a module flag and not a settings object.
_beeline_outbound = False


# The W3C tracecontext + baggage propagator configure_tracing installed (None: another one,
# e.g. from OTEL_PROPAGATORS): while it is the global one, `kafka_trace_headers` may write
# the W3C fields itself.
_default_textmap: Any = None


def set_default_textmap(textmap: Any) -> None:
    global _default_textmap
    _default_textmap = textmap


def set_beeline_outbound(enabled: bool) -> None:
    global _beeline_outbound
    _beeline_outbound = enabled


def beeline_outbound() -> bool:
    """Whether what labstream sends also carries `X-Honeycomb-Trace`."""
    return _beeline_outbound


def _decode(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        return None


def _as_pairs(headers: HeadersInput) -> list[tuple[str, Any]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


class KafkaHeadersGetter(Getter[Sequence[tuple[str, Any]]]):
    """Reads W3C fields from Kafka header tuples; undecodable values are ignored."""

    def get(self, carrier: Sequence[tuple[str, Any]], key: str) -> list[str] | None:
        values = [
            text
            for name, raw in carrier
            if isinstance(name, str) and name.lower() == key.lower()
            for text in [_decode(raw)]
            if text is not None
        ]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, Any]]) -> list[str]:
        return [name for name, _ in carrier]


class KafkaHeadersSetter(Setter[list[tuple[str, bytes]]]):
    """Sets a header, replacing any existing one with the same (case-insensitive) key."""

    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier[:] = [(name, raw) for name, raw in carrier if name.lower() != key.lower()]
        carrier.append((key, value.encode("utf-8")))


kafka_getter = KafkaHeadersGetter()
kafka_setter = KafkaHeadersSetter()


def inject_headers(headers: HeadersInput, context: Context | None = None) -> KafkaHeaders:
    """Headers with the trace context of `context` (default: current) set.

    A list is updated in place and returned; None or a dict gives a new list.
    Existing `traceparent`/`tracestate` are replaced, never duplicated. Without a
    valid span context the headers are returned unchanged.
    """
    if isinstance(headers, list):
        result = headers
    else:
        result = [
            (name, value.encode("utf-8") if isinstance(value, str) else value)
            for name, value in _as_pairs(headers)
        ]
    fields: dict[str, str] = {}
    propagate.inject(fields, context=context)
    if _beeline_outbound:
        beeline.inject_beeline(fields, context)
    for key, value in fields.items():
        kafka_setter.set(result, key, value)
    return result


def kafka_trace_headers(span_context: trace.SpanContext | None,
                        context: Context | None) -> KafkaHeaders:
    """New Kafka headers carrying `span_context` (a span started as a child of `context`),
    or `context`'s own span when `span_context` is None: what `inject_headers([])` gives
    for a context holding that span.

    With labstream's own propagator (W3C + baggage), no baggage and no beeline header, the
    `traceparent` is formatted here, as the W3C propagator formats it: the connector does
    this once per source transaction, and the general path cost ~10 µs of it
    (tests/unit/test_tracing_batch.py checks both give the same headers).
    """
    if span_context is not None:
        if traceparent_direct(context):
            return traceparent_headers(f"{span_context.trace_id:032x}",
                                       f"{span_context.span_id:016x}",
                                       span_context.trace_flags, span_context.trace_state)
        context = trace.set_span_in_context(trace.NonRecordingSpan(span_context), context)
    return inject_headers([], context=context)


def traceparent_direct(context: Context | None) -> bool:
    """Whether `traceparent_headers` writes what the propagator would for a span in
    `context`: labstream's own propagator is the global one, no baggage, no beeline."""
    return (propagate.get_global_textmap() is _default_textmap and not _beeline_outbound
            and not baggage.get_all(context))


def traceparent_headers(trace_hex: str, span_hex: str, flags: int,
                        trace_state: trace.TraceState | None) -> KafkaHeaders:
    """The W3C headers of a span whose ids are already hex text (only where
    `traceparent_direct` says so)."""
    headers = [(TRACEPARENT, f"00-{trace_hex}-{span_hex}-{flags:02x}".encode())]
    if trace_state:
        headers.append((TRACESTATE, trace_state.to_header().encode()))
    return headers


def extract_headers(headers: HeadersInput) -> Context:
    """The Context carried by Kafka headers (W3C, else the beeline header); empty if none."""
    pairs = [(name, value) for name, value in _as_pairs(headers) if isinstance(name, str)]
    extracted = propagate.extract(pairs, getter=kafka_getter)
    if trace.get_current_span(extracted).get_span_context().is_valid:
        return extracted
    from_beeline = beeline.extract_beeline(
        {name: value for name, value in pairs if name.lower() == beeline.HEADER.lower()},
        extracted,
    )
    return from_beeline if from_beeline is not None else extracted


def _w3c_fields(context: Context | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    _W3C.inject(fields, context=context)
    return fields


# -- database transaction ---------------------------------------------------------------

EMIT_SQL = "SELECT pg_logical_emit_message(true, %s, %s)"


def emit_db_trace_context(cursor: Any, context: Context | None = None) -> bool:
    """Write the trace context into the caller's transaction as logical decoding messages.

    Runs `SELECT pg_logical_emit_message(true, 'traceparent', %s)` (and 'tracestate'
    when non-empty) on a psycopg 3 or psycopg2 cursor. Transactional: the messages
    reach the CDC stream only if the transaction commits, and before its changes'
    COMMIT. Returns False (and emits nothing) without a valid span context.
    """
    fields = _w3c_fields(context)
    traceparent = fields.get(TRACEPARENT)
    if not traceparent:
        return False
    cursor.execute(EMIT_SQL, (TRACEPARENT, traceparent))
    if fields.get(TRACESTATE):
        cursor.execute(EMIT_SQL, (TRACESTATE, fields[TRACESTATE]))
    return True


async def emit_db_trace_context_async(cursor: Any, context: Context | None = None) -> bool:
    """`emit_db_trace_context` for a psycopg 3 `AsyncCursor` (the lab API)."""
    fields = _w3c_fields(context)
    traceparent = fields.get(TRACEPARENT)
    if not traceparent:
        return False
    await cursor.execute(EMIT_SQL, (TRACEPARENT, traceparent))
    if fields.get(TRACESTATE):
        await cursor.execute(EMIT_SQL, (TRACESTATE, fields[TRACESTATE]))
    return True


def context_from_db_messages(messages: Mapping[str, str | bytes]) -> Context:
    """The Context from a transaction's logical messages, keyed by prefix.

    `messages` maps a message prefix ('traceparent', 'tracestate') to its content
    (bytes from pgoutput or already decoded text); other prefixes are ignored.
    """
    carrier = {
        key: text
        for key in (TRACEPARENT, TRACESTATE)
        if (text := _decode(messages.get(key))) is not None
    }
    return _W3C.extract(carrier)


# -- job environment ----------------------------------------------------------------------


def job_environment(context: Context | None = None) -> dict[str, str]:
    """`TRACEPARENT` (+ `TRACESTATE`, + `HONEYCOMB_TRACE` with beeline headers on) for a
    job's environment; {} without a span."""
    fields = _w3c_fields(context)
    env: dict[str, str] = {}
    if fields.get(TRACEPARENT):
        env[ENV_TRACEPARENT] = fields[TRACEPARENT]
        if fields.get(TRACESTATE):
            env[ENV_TRACESTATE] = fields[TRACESTATE]
        if _beeline_outbound and (value := beeline.beeline_header(context)):
            env[ENV_HONEYCOMB_TRACE] = value
    return env


def context_from_environment(environ: Mapping[str, str] | None = None) -> Context:
    """The Context handed to this job by its launcher (`TRACEPARENT`/`TRACESTATE`)."""
    env = os.environ if environ is None else environ
    carrier = {}
    if env.get(ENV_TRACEPARENT):
        carrier[TRACEPARENT] = env[ENV_TRACEPARENT]
        if env.get(ENV_TRACESTATE):
            carrier[TRACESTATE] = env[ENV_TRACESTATE]
    return _W3C.extract(carrier)


def configure_job_logging(environ: Mapping[str, str] | None = None) -> str | None:
    """Inside a job: structured logging whose lines carry the launcher's trace id.

    Attaches the environment's context for the rest of the process, so spans the
    job starts join the trace and `base.logs` adds `trace_id` to each line.
    Returns the trace id (32 hex) or None when the job was started without one.
    """
    from base import logs

    logs.configure()
    job_context = context_from_environment(environ)
    span_context = trace.get_current_span(job_context).get_span_context()
    if not span_context.is_valid:
        return None
    otel_context.attach(job_context)
    return format(span_context.trace_id, "032x")


# -- HTTP -----------------------------------------------------------------------------------


class _HttpGetter(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        values = [value for name, value in carrier.items() if name.lower() == key.lower()]
        return values or None

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_http_getter = _HttpGetter()


def extract_http_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Context:
    """The Context of an incoming request: W3C via the global propagator, else beeline."""
    mapping = dict(headers) if not isinstance(headers, Mapping) else headers
    extracted = propagate.extract(mapping, getter=_http_getter)
    if trace.get_current_span(extracted).get_span_context().is_valid:
        return extracted
    from_beeline = beeline.extract_beeline(mapping, extracted)
    return from_beeline if from_beeline is not None else extracted


def inject_http_headers(
    headers: MutableMapping[str, str], context: Context | None = None, *, with_beeline: bool = True
) -> MutableMapping[str, str]:
    """Add W3C headers (and `X-Honeycomb-Trace` for beeline services) to outgoing headers."""
    propagate.inject(headers, context=context)
    if with_beeline:
        value = beeline.beeline_header(context)
        if value is not None:
            headers[beeline.HEADER] = value
    return headers


def trace_id_hex(context: Context | None = None) -> str | None:
    """The 32-hex trace id of the current (or given) context, None without one."""
    span_context = trace.get_current_span(context).get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
