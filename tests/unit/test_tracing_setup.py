"""Exporter choice, Honeycomb headers and the disabled switch (no network)."""

from __future__ import annotations

import os

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from tracing.exceptions import TracingConfigError
from tracing.settings import TracingSettings, is_classic_honeycomb_key
from tracing.setup import build_tracer_provider, configure_tracing
from tracing.spanstore import DbSpanExporter

ENV_NAMES = (
    "HONEYCOMB_API_KEY",
    "HONEYCOMB_REGION",
    "HONEYCOMB_DATASET",
    "HONEYCOMB_API_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name in ("EXPORTERS", "ENABLED", "HONEYCOMB_API_KEY", "HONEYCOMB_REGION"):
        monkeypatch.delenv(f"LABSTREAM_TRACING_{name}", raising=False)


def exporters_of(provider) -> list:
    processors = provider._active_span_processor._span_processors
    return [processor._batch_processor._exporter._inner for processor in processors]


def test_nothing_configured_means_the_db_span_store_only() -> None:
    assert TracingSettings().exporter_names() == ["db"]


def test_honeycomb_key_adds_honeycomb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONEYCOMB_API_KEY", "abcdefghijklmnopqrstuv")
    assert TracingSettings().exporter_names() == ["db", "honeycomb"]


def test_otlp_endpoint_adds_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces")
    assert TracingSettings().exporter_names() == ["db", "otlp"]


def test_explicit_exporter_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "console, OTLP,console")
    assert TracingSettings().exporter_names() == ["console", "otlp"]
    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "none")
    assert TracingSettings().exporter_names() == []


def test_unknown_exporter_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "db,jaeger")
    with pytest.raises(TracingConfigError) as excinfo:
        TracingSettings().exporter_names()
    assert "jaeger" in excinfo.value.message
    assert excinfo.value.hint and "console" in excinfo.value.hint


def test_honeycomb_us_and_eu_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TracingSettings().honeycomb_traces_url() == "https://api.honeycomb.io/v1/traces"
    monkeypatch.setenv("HONEYCOMB_REGION", "eu")
    assert TracingSettings().honeycomb_traces_url() == "https://api.eu1.honeycomb.io/v1/traces"
    monkeypatch.setenv("LABSTREAM_TRACING_HONEYCOMB_REGION", "mars")
    with pytest.raises(TracingConfigError):
        TracingSettings().honeycomb_traces_url()


def test_dataset_header_only_for_classic_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONEYCOMB_API_KEY", "abcdefghijklmnopqrstuv")  # environment key: 22
    assert TracingSettings().honeycomb_headers("labstream-cdc") == {
        "x-honeycomb-team": "abcdefghijklmnopqrstuv"
    }
    classic = "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("HONEYCOMB_API_KEY", classic)
    assert TracingSettings().honeycomb_headers("labstream-cdc") == {
        "x-honeycomb-team": classic,
        "x-honeycomb-dataset": "labstream-cdc",
    }


def test_classic_key_detection() -> None:
    assert is_classic_honeycomb_key("0123456789abcdef0123456789abcdef")
    assert is_classic_honeycomb_key("hcaic_" + "a1" * 29)
    assert not is_classic_honeycomb_key("hcaik_" + "a1" * 29)
    assert not is_classic_honeycomb_key("abcdefghijklmnopqrstuv")


def test_the_key_is_secret_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONEYCOMB_API_KEY", "supersecretkey123456")
    assert "supersecretkey123456" not in repr(TracingSettings())


def test_provider_gets_one_batch_processor_per_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "db,honeycomb,console")
    monkeypatch.setenv("HONEYCOMB_API_KEY", "abcdefghijklmnopqrstuv")
    provider = build_tracer_provider("labstream-worker")
    try:
        kinds = [type(exporter) for exporter in exporters_of(provider)]
        assert kinds == [DbSpanExporter, OTLPSpanExporter, ConsoleSpanExporter]
        honeycomb = exporters_of(provider)[1]
        assert honeycomb._endpoint == "https://api.honeycomb.io/v1/traces"
        attributes = provider.resource.attributes
        assert attributes["service.name"] == "labstream-worker"
        assert "service.version" in attributes and "host.name" in attributes
        assert attributes["process.pid"] == os.getpid()
    finally:
        provider.shutdown()


def test_honeycomb_without_a_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "honeycomb")
    with pytest.raises(TracingConfigError):
        build_tracer_provider("labstream-worker")


@pytest.mark.parametrize(
    ("name", "value"), [("OTEL_SDK_DISABLED", "true"), ("LABSTREAM_TRACING_ENABLED", "false")]
)
def test_disabled_installs_nothing(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    from opentelemetry import trace

    import tracing.setup

    monkeypatch.setattr(tracing.setup, "_provider", None)  # as in a fresh process
    monkeypatch.setenv(name, value)
    before = trace.get_tracer_provider()
    provider = configure_tracing("labstream-worker")
    assert trace.get_tracer_provider() is before
    assert provider._active_span_processor._span_processors == ()


class _Blocked:
    """An exporter that never returns until released: the queue fills up behind it."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.entered = threading.Event()
        self.exported = 0

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.entered.set()
        self.release.wait(30)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _sample(name: str, reason: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "labstream_spans_dropped_total", {"exporter": name, "reason": reason})
    return value or 0.0


def test_a_full_queue_counts_every_dropped_span(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from tracing.setup import CountingBatchSpanProcessor

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    exporter = _Blocked()
    processor = CountingBatchSpanProcessor(exporter, "test-full")
    assert processor.queue is not None and processor.max_queue_size == 4  # SDK internals found
    provider = TracerProvider()
    provider.add_span_processor(processor)
    before = _sample("test-full", "queue_full")
    tracer = provider.get_tracer("t")
    tracer.start_span("first").end()
    assert exporter.entered.wait(10)  # the first span is in the (blocked) exporter's hands
    for _ in range(19):
        tracer.start_span("s").end()
    dropped = _sample("test-full", "queue_full") - before
    exporter.release.set()
    provider.shutdown()
    # the first span + the last 4 queued are exported; the 15 evicted ones are counted
    assert (exporter.exported, dropped) == (5, 15)


def test_a_failing_exporter_counts_its_spans_as_dropped() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

    from tracing.setup import CountingExporter

    class Failing:
        def export(self, spans):
            return SpanExportResult.FAILURE

        def shutdown(self):
            pass

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(CountingExporter(Failing(), "test-fail")))
    before = _sample("test-fail", "export_failed")
    for _ in range(3):
        provider.get_tracer("t").start_span("s").end()
    assert _sample("test-fail", "export_failed") - before == 3


def test_the_sampler_is_the_otel_policy_and_honours_the_sampled_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "none")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    provider = build_tracer_provider("labstream-test")
    tracer = provider.get_tracer("t")
    assert not tracer.start_span("root").is_recording()  # ratio 0 for new traces
    w3c = TraceContextTextMapPropagator()
    for flags, recording in (("01", True), ("00", False)):
        parent = w3c.extract({"traceparent": f"00-{'a' * 32}-{'b' * 16}-{flags}"})
        span = tracer.start_span("child", context=parent)
        assert span.is_recording() is recording
        assert span.get_span_context().trace_id == int("a" * 32, 16)
        assert isinstance(span, trace.Span)


def test_rows_handed_to_the_span_store_processor_are_queued_and_counted_alike(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`emit_row` (tracing/batch.py's direct span store rows) goes through the same queue:
    what a full queue evicts is counted, the rest reaches the exporter."""
    from tracing.setup import CountingBatchSpanProcessor

    class BlockedRows(_Blocked):
        takes_span_rows = True

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    exporter = BlockedRows()
    processor = CountingBatchSpanProcessor(exporter, "test-rows")
    assert processor.takes_rows
    assert not CountingBatchSpanProcessor(_Blocked(), "test-spans").takes_rows
    before = _sample("test-rows", "queue_full")
    processor.emit_row(("first",))
    assert exporter.entered.wait(10)
    for n in range(19):
        processor.emit_row((n,))
    dropped = _sample("test-rows", "queue_full") - before
    exporter.release.set()
    processor.shutdown()
    assert (exporter.exported, dropped) == (5, 15)
