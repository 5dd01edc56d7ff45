"""`configure_tracing(service_name)`: one TracerProvider per process, exporters by settings.

Called once at the start of every labstream process (cdc, worker, job, api,
simulator). Idempotent: later calls return the provider already installed. The
global propagator becomes W3C tracecontext + baggage unless `OTEL_PROPAGATORS`
says otherwise. `shutdown_tracing()` flushes every exporter before exit.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from base import __version__
from base.logs import kv
from tracing import metrics
from tracing.settings import TracingSettings

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    "labstream-cdc",
    "labstream-worker",
    "labstream-job",
    "labstream-api",
    "labstream-simulator",
)

_lock = threading.Lock()
_provider: TracerProvider | None = None


def build_resource(service_name: str) -> Resource:
    # OTEL_RESOURCE_ATTRIBUTES are merged in by Resource.create; ours win.
    return Resource.create(
        {
            "service.name": service_name,
            "service.namespace": "labstream",
            "service.version": __version__,
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
        }
    )


def _db_exporter(service_name: str, settings: TracingSettings) -> SpanExporter:
    from base.settings import service_settings
    from tracing.spanstore import DbSpanExporter

    return DbSpanExporter(settings.database_url or service_settings().database_url)


def _otlp_exporter(service_name: str, settings: TracingSettings) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # endpoint, headers, timeout, compression from OTEL_EXPORTER_OTLP_*
    return OTLPSpanExporter()


def _honeycomb_exporter(service_name: str, settings: TracingSettings) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=settings.honeycomb_traces_url(),
        headers=settings.honeycomb_headers(service_name),
    )


def _console_exporter(service_name: str, settings: TracingSettings) -> SpanExporter:
    # stderr: stdout belongs to the command's own output (--json)
    return ConsoleSpanExporter(service_name=service_name, out=sys.stderr)


EXPORTERS: dict[str, Callable[[str, TracingSettings], SpanExporter]] = {
    "db": _db_exporter,
    "otlp": _otlp_exporter,
    "honeycomb": _honeycomb_exporter,
    "console": _console_exporter,
}


# The SDK's default queue (2,048 spans) overflowed at full load in the old per-record design;
# with batch spans it is ample, the margin covers a slow exporter for a few seconds.
DEFAULT_MAX_QUEUE_SIZE = 8192


class CountingExporter(SpanExporter):
    """Counts what an exporter accepted and what it lost (`labstream_spans_*_total`)."""

    def __init__(self, inner: SpanExporter, name: str) -> None:
        self._inner = inner
        self._exported = metrics.SPANS_EXPORTED.labels(name)
        self._failed = metrics.SPANS_DROPPED.labels(name, "export_failed")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the SDK's worker thread
            kv(log, "warning", "span exporter raised", error=str(exc))
            result = SpanExportResult.FAILURE
        (self._exported if result is SpanExportResult.SUCCESS else self._failed).inc(len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's BatchSpanProcessor, plus a count of the spans its full queue drops.

    The SDK only logs "Queue full" (and evicts the oldest span); we count each eviction
    in `labstream_spans_dropped_total{reason="queue_full"}` so no span is lost silently.
    """

    def __init__(self, exporter: SpanExporter, name: str) -> None:
        queue_size = None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else DEFAULT_MAX_QUEUE_SIZE
        super().__init__(CountingExporter(exporter, name), max_queue_size=queue_size)
        inner = getattr(self, "_batch_processor", None)
        # the SDK's internal queue (a bounded deque); tests/unit/test_tracing_setup.py fails
        # if an SDK upgrade moves it, rather than the count silently staying at 0
        self.queue = getattr(inner, "_queue", None)
        self.max_queue_size: int = getattr(inner, "_max_queue_size", 0)
        self._dropped = metrics.SPANS_DROPPED.labels(name, "queue_full")
        # an exporter that writes rows built by their producer (DbSpanExporter: SpanRow, from
        # tracing/batch.py) gets them without a ReadableSpan per span
        self._emit: Callable[[Any], None] | None = getattr(inner, "emit", None)
        self.takes_rows: bool = bool(getattr(exporter, "takes_span_rows", False)) and \
            self._emit is not None

    def emit_row(self, row: Any) -> None:
        """Queue a finished, sampled span already in its exporter's row form (only when
        `takes_rows`): the same queue, export thread and drop count as `on_end`."""
        if self.queue is not None and len(self.queue) >= self.max_queue_size:
            self._dropped.inc()
        assert self._emit is not None  # takes_rows
        self._emit(row)

    def on_end(self, span: ReadableSpan) -> None:
        if (self.queue is not None and span.context is not None and span.context.trace_flags.sampled
                and len(self.queue) >= self.max_queue_size):
            self._dropped.inc()
        super().on_end(span)


def build_tracer_provider(
    service_name: str, settings: TracingSettings | None = None
) -> TracerProvider:
    """A TracerProvider with the configured exporters, not installed globally (tests use it)."""
    settings = settings or TracingSettings()
    names = settings.exporter_names()  # validate before building anything
    provider = TracerProvider(resource=build_resource(service_name))
    for name in names:
        exporter = EXPORTERS[name](service_name, settings)
        provider.add_span_processor(CountingBatchSpanProcessor(exporter, name))
    return provider


def set_global_propagator() -> None:
    if os.environ.get("OTEL_PROPAGATORS"):
        return  # the SDK already built what the operator asked for
    from tracing.propagation import set_default_textmap

    textmap = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    propagate.set_global_textmap(textmap)
    set_default_textmap(textmap)


def configure_tracing(
    service_name: str, *, settings: TracingSettings | None = None
) -> TracerProvider:
    """Install the process's TracerProvider (once) and the W3C propagator; return it.

    Disabled (`LABSTREAM_TRACING_ENABLED=false` or `OTEL_SDK_DISABLED=true`): nothing
    is installed, spans stay no-ops, and a provider without exporters is returned.
    """
    global _provider
    settings = settings or TracingSettings()
    from tracing.propagation import set_beeline_outbound

    set_beeline_outbound(settings.beeline_headers)
    with _lock:
        if _provider is not None:
            if _provider.resource.attributes.get("service.name") != service_name:
                kv(log, "debug", "tracing already configured", service=service_name)
            return _provider
        if not settings.is_enabled():
            kv(log, "info", "tracing disabled", service=service_name)
            return TracerProvider(resource=build_resource(service_name))
        provider = build_tracer_provider(service_name, settings)
        set_global_propagator()
        trace.set_tracer_provider(provider)
        _provider = provider
        kv(
            log,
            "debug",
            "tracing configured",
            service=service_name,
            exporters=",".join(settings.exporter_names()) or "none",
        )
        return provider


def shutdown_tracing(timeout_millis: int = 10_000) -> None:
    """Flush every exporter and stop the provider installed by `configure_tracing`."""
    with _lock:
        provider = _provider
    # the provider stays installed (OTel allows one per process); it now drops spans
    if provider is not None:
        provider.force_flush(timeout_millis)
        provider.shutdown()


def flush_tracing(timeout_millis: int = 10_000) -> bool:
    """Export every span finished so far (e.g. before `labstream trace` reads them)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider.force_flush(timeout_millis)
    return True
