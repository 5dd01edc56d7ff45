"""The lab-DB span store: finished spans into `labstream.spans`, and back out.

`DbSpanExporter` is an OpenTelemetry `SpanExporter` run behind a
`BatchSpanProcessor` (the SDK's worker thread), so the data path never waits for
the database. Each batch is one COPY. It never raises: when the database is unreachable or an insert
fails, the batch is dropped, `dropped_spans` counts it, the first failure is
logged once (and the recovery), and the exporter waits `retry_after_s` before it
tries to connect again so a down database costs nothing per batch.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from base.logs import kv

log = logging.getLogger(__name__)

COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service_name",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "status_message",
    "attributes",
    "events",
    "links",
    "resource",
    "scope_name",
)
COPY_SQL = f"COPY labstream.spans ({', '.join(COLUMNS)}) FROM STDIN"
INSERT_SQL = (
    f"INSERT INTO labstream.spans ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (trace_id, span_id) DO NOTHING"
)


# one encoder for every span: json.dumps(..., default=str) builds a new one per call
_ENCODER = json.JSONEncoder(default=str)
_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _dumps(value: Any) -> str:
    """JSON text for a jsonb column (tuples become arrays, anything else its str()).

    orjson first: ~10x faster than the json module on span attributes, and the span
    store's thread shares the GIL with the connector's hot path. What orjson refuses
    (integers beyond 64 bits, lone surrogates, non-string keys) goes through the json
    module as before; orjson writes NaN as null, which jsonb accepts (json's NaN made
    the whole batch fail).

    PostgreSQL jsonb cannot hold U+0000: one such character (a binary Kafka key, an
    exception message quoting bytes) would make the whole batch fail and be dropped, so
    an escaped NUL becomes U+FFFD (only when there is one: the common case is one scan).
    """
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        text = _ENCODER.encode(value)
    return _ESCAPED_NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def _text(value: str) -> str:
    # PostgreSQL text cannot hold U+0000 either
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _json_attributes(attributes: Mapping[str, Any] | None) -> str:
    return _dumps(dict(attributes)) if attributes else "{}"


def attributes_json(attributes: Mapping[str, Any]) -> str:
    """The `attributes` column of a plain dict of span attributes."""
    return _dumps(attributes) if attributes else "{}"


_resource_json: dict[int, tuple[Any, str, str]] = {}


def resource_columns(resource: Any) -> tuple[str, str]:
    """(service.name, resource JSON): one Resource per process, serialised once."""
    cached = _resource_json.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1], cached[2]
    attributes = dict(resource.attributes) if resource else {}
    service = str(attributes.get("service.name", "unknown_service"))
    text = _json_attributes(attributes)
    if resource is not None:
        _resource_json[id(resource)] = (resource, service, text)
    return service, text


def _events_json(events: Sequence[Any]) -> str:
    return _dumps([
        {"name": e.name, "time_unix_nano": e.timestamp, "attributes": dict(e.attributes or {})}
        for e in events
    ]) if events else "[]"


def events_json(name: str, time_unix_nano: int, attributes: Sequence[Mapping[str, Any]]) -> str:
    """The `events` column of events that share a name and a time (what `_events_json`
    writes for them), without an SDK `Event` object each."""
    return _dumps([{"name": name, "time_unix_nano": time_unix_nano,
                    "attributes": a if type(a) is dict else dict(a)}
                   for a in attributes]) if attributes else "[]"


def _links_json(links: Sequence[Any]) -> str:
    return _dumps([
        {
            "trace_id": format(link.context.trace_id, "032x"),
            "span_id": format(link.context.span_id, "016x"),
            "attributes": dict(link.attributes or {}),
        }
        for link in links
    ]) if links else "[]"


def links_json(links: Sequence[tuple[str, str]]) -> str:
    """The `links` column of links given as (trace id, span id) in hex, with no
    attributes (what `_links_json` writes for them), without a `Link` object each."""
    return _dumps([{"trace_id": t, "span_id": s, "attributes": {}} for t, s in links]) \
        if links else "[]"


# an enum's .name is a descriptor call; these are plain look-ups
KIND_NAMES = {kind: kind.name for kind in SpanKind}
STATUS_NAMES = {code: code.name for code in StatusCode}


class SpanRow(tuple):
    """A `labstream.spans` row built by its producer (tracing/batch.py), not from an SDK
    span: it goes through the same batch processor, queue and drop counters, and
    `DbSpanExporter` writes it as it is."""

    __slots__ = ()


def span_row(trace_id: str, span_id: str, parent_span_id: str | None, name: str, kind: str,
             resource: Any, start: int, end: int, status: str, status_message: str | None,
             attributes: str, events: str, scope_name: str | None,
             links: str = "[]") -> SpanRow:
    """One row in COLUMNS order from what is already text (ids in hex, JSON columns)."""
    service_name, resource_json = resource_columns(resource)
    return SpanRow((trace_id, span_id, parent_span_id, _text(name), kind, service_name, start,
                    end, status, _text(status_message) if status_message else None,
                    attributes, events, links, resource_json, scope_name))


def span_to_row(span: ReadableSpan) -> tuple[Any, ...]:
    """One `labstream.spans` row (in COLUMNS order) for a finished span."""
    span_context = span.get_span_context()
    assert span_context is not None  # finished SDK spans always have one
    service_name, resource_json = resource_columns(span.resource)
    parent = span.parent
    status = span.status
    start = span.start_time
    end = span.end_time
    scope = span.instrumentation_scope
    return (
        f"{span_context.trace_id:032x}",
        f"{span_context.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None else None,
        _text(span.name),
        KIND_NAMES[span.kind],
        service_name,
        start,
        end if end is not None else start,
        STATUS_NAMES[status.status_code],
        _text(status.description) if status.description else None,
        _json_attributes(span.attributes),
        _events_json(span.events),
        _links_json(span.links),
        resource_json,
        scope.name if scope else None,
    )


def _write(connection: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
    """COPY the batch in (one round trip, ~10x cheaper than INSERTs per span); a span
    already stored (an exporter retry, a re-imported batch) falls back to INSERT ... ON
    CONFLICT DO NOTHING for this batch, so duplicates never drop their neighbours."""
    try:
        with connection.transaction(), connection.cursor() as cursor, \
                cursor.copy(COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.UniqueViolation:
        with connection.transaction(), connection.cursor() as cursor:
            cursor.executemany(INSERT_SQL, rows)


class DbSpanExporter(SpanExporter):
    """Writes span batches to `labstream.spans`; drops (and counts) them on any failure."""

    takes_span_rows = True  # export() also takes SpanRow (CountingBatchSpanProcessor.emit_row)

    def __init__(
        self, database_url: str, *, connect_timeout_s: int = 3, retry_after_s: float = 10.0
    ) -> None:
        self._database_url = database_url
        self._connect_timeout_s = connect_timeout_s
        self._retry_after_s = retry_after_s
        self._connection: psycopg.Connection | None = None
        self._next_attempt = 0.0
        self._failing = False
        self._lock = threading.Lock()
        self.exported_spans = 0
        self.dropped_spans = 0

    def export(self, spans: Sequence[ReadableSpan | SpanRow]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        with self._lock:
            try:
                rows = [span if isinstance(span, SpanRow) else span_to_row(span)
                        for span in spans]
                connection = self._connect()
                if connection is None:
                    self.dropped_spans += len(spans)
                    return SpanExportResult.FAILURE
                try:
                    _write(connection, rows)
                except psycopg.OperationalError:
                    # the connection died (a PostgreSQL restart, a failover, an idle
                    # timeout): one fresh connection, once, before the batch counts as lost
                    connection.close()
                    self._connection = None
                    self._next_attempt = 0.0
                    connection = self._connect()
                    if connection is None:
                        raise
                    _write(connection, rows)
            except Exception as exc:  # never break the data path, whatever went wrong
                self._on_failure(exc, len(spans))
                return SpanExportResult.FAILURE
            self.exported_spans += len(spans)
            if self._failing:
                self._failing = False
                kv(log, "info", "span store writing again", dropped_spans=self.dropped_spans)
            return SpanExportResult.SUCCESS

    def _connect(self) -> psycopg.Connection | None:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if time.monotonic() < self._next_attempt:
            return None
        self._connection = psycopg.connect(
            self._database_url,
            autocommit=True,
            connect_timeout=self._connect_timeout_s,
            application_name="labstream-spanstore",
        )
        return self._connection

    def _on_failure(self, exc: Exception, span_count: int) -> None:
        self.dropped_spans += span_count
        self._next_attempt = time.monotonic() + self._retry_after_s
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if not self._failing:
            self._failing = True
            kv(
                log,
                "warning",
                "span store cannot write spans; dropping them until the database answers",
                error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                dropped_spans=self.dropped_spans,
                hint="run `labstream db migrate`, or set LABSTREAM_TRACING_EXPORTERS without db",
            )

    def shutdown(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSpan:
    """One row of `labstream.spans`, as `labstream trace` shows it."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service_name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: str
    status_message: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ns(self) -> int:
        return self.end_time_unix_nano - self.start_time_unix_nano

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "service_name": self.service_name,
            "start_time_unix_nano": self.start_time_unix_nano,
            "end_time_unix_nano": self.end_time_unix_nano,
            "duration_ns": self.duration_ns,
            "status_code": self.status_code,
            "status_message": self.status_message,
            "attributes": self.attributes,
            "events": self.events,
            "links": self.links,
            "resource": self.resource,
        }


_SELECT = (
    "SELECT trace_id, span_id, parent_span_id, name, kind, service_name, "
    "start_time_unix_nano, end_time_unix_nano, status_code, status_message, "
    "attributes, events, links, resource FROM labstream.spans "
)


TRACE_SQL = _SELECT + "WHERE trace_id = %s ORDER BY start_time_unix_nano, span_id"


def fetch_trace(connection: psycopg.Connection, trace_id: str) -> list[StoredSpan]:
    """Every stored span of one trace, by start time."""
    with connection.cursor() as cursor:
        cursor.execute(TRACE_SQL, (trace_id,))
        return [StoredSpan(*row) for row in cursor.fetchall()]


async def fetch_trace_async(connection: psycopg.AsyncConnection, trace_id: str) -> list[StoredSpan]:
    """`fetch_trace` on an async connection (the lab API)."""
    async with connection.cursor() as cursor:
        await cursor.execute(TRACE_SQL, (trace_id,))
        return [StoredSpan(*row) for row in await cursor.fetchall()]


# spans of other traces with a link into trace %s (the trace id is given twice:
# `_linking_params`)
_LINKING_WHERE = "WHERE links @> %s::jsonb AND trace_id <> %s ORDER BY start_time_unix_nano"
LINKING_SQL = _SELECT + _LINKING_WHERE


def _linking_params(trace_id: str) -> tuple[str, str]:
    return json.dumps([{"trace_id": trace_id}]), trace_id


def fetch_linking_spans(connection: psycopg.Connection, trace_id: str) -> list[StoredSpan]:
    """Spans of *other* traces that link into this trace (replays, batch consumers)."""
    with connection.cursor() as cursor:
        cursor.execute(LINKING_SQL, _linking_params(trace_id))
        return [StoredSpan(*row) for row in cursor.fetchall()]


async def fetch_linking_spans_async(
    connection: psycopg.AsyncConnection, trace_id: str
) -> list[StoredSpan]:
    """`fetch_linking_spans` on an async connection (the lab API)."""
    async with connection.cursor() as cursor:
        await cursor.execute(LINKING_SQL, _linking_params(trace_id))
        return [StoredSpan(*row) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    span_count: int
    first_start_unix_nano: int
    root_name: str | None


def find_traces_by_experiment(
    connection: psycopg.Connection, experiment_id: str, *, limit: int = 50
) -> list[TraceSummary]:
    """Traces that have a span with `lab.experiment.id = experiment_id`, newest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.trace_id, count(*), min(s.start_time_unix_nano),
                   (array_agg(s.name ORDER BY s.start_time_unix_nano)
                        FILTER (WHERE s.parent_span_id IS NULL))[1]
              FROM labstream.spans s
             WHERE s.trace_id IN (SELECT trace_id FROM labstream.spans
                                   WHERE attributes ? 'lab.experiment.id'
                                     AND attributes ->> 'lab.experiment.id' = %s)
             GROUP BY s.trace_id
             ORDER BY min(s.start_time_unix_nano) DESC
             LIMIT %s
            """,
            (experiment_id, limit),
        )
        return [TraceSummary(*row) for row in cursor.fetchall()]


# -- read helpers for the layers above (this module is labstream.spans' only SQL author) --


def experiment_of_trace(connection: psycopg.Connection, trace_id: str) -> str | None:
    """The `lab.experiment.id` any span of the trace carries; None if none (or no table)."""
    try:
        row = connection.execute(
            "SELECT attributes ->> 'lab.experiment.id' FROM labstream.spans "
            "WHERE trace_id = %s AND attributes ? 'lab.experiment.id' LIMIT 1",
            (trace_id,)).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return row[0] if row else None


def experiment_trace_ids(connection: psycopg.Connection, experiment_id: str) -> list[str]:
    """Trace ids with a span of this experiment, oldest trace first ([] without the table)."""
    try:
        rows = connection.execute(
            "SELECT trace_id FROM labstream.spans WHERE attributes ->> 'lab.experiment.id' = %s "
            "GROUP BY trace_id ORDER BY min(start_time_unix_nano)", (experiment_id,)).fetchall()
    except psycopg.errors.UndefinedTable:
        return []
    return [row[0] for row in rows]


@dataclass(frozen=True)
class SpanOutline:
    service_name: str
    name: str
    status_code: str
    status_message: str | None


_OUTLINE = "SELECT service_name, name, status_code, status_message FROM labstream.spans "


def span_outlines(connection: psycopg.Connection, trace_id: str) -> list[SpanOutline] | None:
    """Service, name and status of every span of a trace by start; None without the table."""
    return _outlines(connection, "WHERE trace_id = %s ORDER BY start_time_unix_nano",
                     (trace_id,))


def linking_outlines(connection: psycopg.Connection,
                     trace_id: str) -> list[SpanOutline] | None:
    """`span_outlines` of the spans of other traces that link into this one (a connector
    window span, a worker batch span, a replay); None without the table."""
    return _outlines(connection, _LINKING_WHERE, _linking_params(trace_id))


def _outlines(connection: psycopg.Connection, where: str,
              params: tuple[str, ...]) -> list[SpanOutline] | None:
    try:
        rows = connection.execute(_OUTLINE + where, params).fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    return [SpanOutline(*row) for row in rows]


def spans_since(connection: psycopg.Connection, since_epoch_s: float) -> int:
    """How many spans started since a moment (the demo's summary)."""
    row = connection.execute("SELECT count(*) FROM labstream.spans "
                             "WHERE start_time >= to_timestamp(%s)", (since_epoch_s,)).fetchone()
    return int(row[0]) if row else 0
