"""Spans reach a real OTLP/HTTP endpoint (run by the test on 127.0.0.1) intact."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.trace import SpanKind
from otlp_receiver import OtlpReceiver

from tracing import semconv
from tracing.propagation import context_from_environment, inject_headers, job_environment
from tracing.settings import TracingSettings
from tracing.setup import build_tracer_provider

pytestmark = pytest.mark.integration

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def receiver():
    with OtlpReceiver() as running:
        yield running


def test_otlp_exporter_reads_the_standard_env_and_keeps_parents(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-lab-test=otlp-ok")
    provider = build_tracer_provider("labstream-worker", TracingSettings())
    tracer = provider.get_tracer("test")
    try:
        with semconv.send_span(tracer, topic="lab.public.runs", key="run-1") as send:
            headers = inject_headers(None)
        with semconv.process_span(tracer, topic="lab.public.runs", headers=headers, offset=3):
            env = job_environment()
        with tracer.start_as_current_span("run job", context=context_from_environment(env)):
            pass
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()

    spans = {span.name: span for span in receiver.wait_for_spans(3)}
    send_id = format(send.get_span_context().span_id, "016x")
    trace_id = format(send.get_span_context().trace_id, "032x")
    assert {span.trace_id for span in spans.values()} == {trace_id}
    assert spans["send lab.public.runs"].kind == "SPAN_KIND_PRODUCER"
    assert spans["send lab.public.runs"].parent_span_id is None
    process = spans["process lab.public.runs"]
    assert process.kind == "SPAN_KIND_CONSUMER"
    assert process.parent_span_id == send_id
    assert process.links == [(trace_id, send_id)]
    assert process.attributes["messaging.kafka.offset"] == 3
    assert spans["run job"].parent_span_id == process.span_id
    assert spans["run job"].service_name == "labstream-worker"
    assert receiver.requests[0].headers["x-lab-test"] == "otlp-ok"


def test_honeycomb_exporter_sends_the_team_header(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "honeycomb")
    monkeypatch.setenv("HONEYCOMB_API_KEY", "abcdefghijklmnopqrstuv")
    monkeypatch.setenv("HONEYCOMB_API_ENDPOINT", receiver.endpoint)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    provider = build_tracer_provider("labstream-cdc", TracingSettings())
    try:
        with provider.get_tracer("test").start_as_current_span("hello", kind=SpanKind.SERVER):
            pass
        provider.force_flush(10_000)
    finally:
        provider.shutdown()
    (span,) = receiver.wait_for_spans(1)
    assert span.name == "hello" and span.service_name == "labstream-cdc"
    headers = receiver.requests[0].headers
    assert headers["x-honeycomb-team"] == "abcdefghijklmnopqrstuv"
    assert "x-honeycomb-dataset" not in headers  # environment keys route by service.name


def test_configure_tracing_is_global_idempotent_and_flushes_on_shutdown(
    receiver: OtlpReceiver,
) -> None:
    script = textwrap.dedent(
        """
        from opentelemetry import propagate, trace
        from tracing.setup import configure_tracing, shutdown_tracing

        first = configure_tracing("labstream-job")
        assert configure_tracing("labstream-job") is first
        assert trace.get_tracer_provider() is first
        assert {"traceparent", "baggage"} <= set(propagate.get_global_textmap().fields)
        with trace.get_tracer("t").start_as_current_span("in the job"):
            pass
        shutdown_tracing()  # must flush: nothing else waits for the batch
        """
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "LABSTREAM_TRACING_", "HONEYCOMB_"))
    }
    env.update(
        LABSTREAM_TRACING_EXPORTERS="otlp",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.traces_url,
        OTEL_BSP_SCHEDULE_DELAY="60000",  # only shutdown can have sent it
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    (span,) = receiver.wait_for_spans(1)
    assert span.name == "in the job"
    assert span.service_name == "labstream-job"
    assert span.resource["process.pid"] > 0
