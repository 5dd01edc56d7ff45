"""Messaging span helpers and span -> row conversion, with an in-memory exporter."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, Status, StatusCode

from tracing import semconv
from tracing.propagation import inject_headers
from tracing.spanstore import COLUMNS, span_to_row


@pytest.fixture
def recorded():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "labstream-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_send_then_process_is_one_trace_with_a_link(recorded) -> None:
    tracer, exporter = recorded
    with semconv.send_span(tracer, topic="lab.public.experiments", key=b"exp-1") as send:
        headers = inject_headers([("other", b"x")])
        semconv.set_delivery_attributes(send, partition=2, offset=41)
    with semconv.process_span(
        tracer,
        topic="lab.public.experiments",
        headers=headers,
        partition=2,
        offset=41,
        key=b"exp-1",
        consumer_group="labstream-worker",
    ):
        pass
    send_span, process_span = exporter.get_finished_spans()
    assert send_span.name == "send lab.public.experiments"
    assert send_span.kind is SpanKind.PRODUCER
    assert send_span.attributes["messaging.system"] == "kafka"
    assert send_span.attributes["messaging.kafka.message.key"] == "exp-1"
    assert send_span.attributes["messaging.kafka.offset"] == 41
    assert process_span.name == "process lab.public.experiments"
    assert process_span.kind is SpanKind.CONSUMER
    assert process_span.context.trace_id == send_span.context.trace_id
    assert process_span.parent.span_id == send_span.context.span_id
    assert [link.context.span_id for link in process_span.links] == [send_span.context.span_id]
    assert process_span.attributes["messaging.consumer.group.name"] == "labstream-worker"
    assert process_span.attributes["messaging.destination.partition.id"] == "2"
    deprecated = set(semconv.DEPRECATED_NAMES)
    assert not deprecated & {*send_span.attributes, *process_span.attributes}


def test_a_replay_starts_a_new_trace_linked_to_the_original(recorded) -> None:
    tracer, exporter = recorded
    with semconv.send_span(tracer, topic="t"):
        headers = inject_headers(None)
    with semconv.process_span(tracer, topic="t", headers=headers, continue_trace=False):
        pass
    send_span, process_span = exporter.get_finished_spans()
    assert process_span.context.trace_id != send_span.context.trace_id
    assert process_span.parent is None
    assert process_span.links[0].context.trace_id == send_span.context.trace_id


def test_process_without_trace_headers_starts_a_root_without_links(recorded) -> None:
    tracer, exporter = recorded
    with semconv.process_span(tracer, topic="t", headers=[("k", b"\xff")], offset=0):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and list(span.links) == []
    assert span.attributes["messaging.kafka.offset"] == 0


def test_helpers_return_early_on_a_non_recording_span() -> None:
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with tracer.start_as_current_span("x") as span:
        semconv.set_send_attributes(span, topic="t", key=b"k")
        semconv.set_lab_attributes(span, experiment_id="exp-1")
        assert not span.is_recording()


def test_keys_that_are_not_utf8_are_hex() -> None:
    assert semconv.key_to_str(b"\xff\x00") == "ff00"
    assert semconv.key_to_str("exp-1") == "exp-1"


def test_lab_attributes(recorded) -> None:
    tracer, exporter = recorded
    with tracer.start_as_current_span("job") as span:
        semconv.set_lab_attributes(span, experiment_id="exp-1", job_id="job-2", job_exit_code=0)
    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes) == {
        "lab.experiment.id": "exp-1",
        "lab.job.id": "job-2",
        "lab.job.exit_code": 0,
    }


def test_span_to_row_keeps_everything_the_trace_view_needs(recorded) -> None:
    tracer, exporter = recorded
    with (
        tracer.start_as_current_span("parent") as parent,
        tracer.start_as_current_span("child", attributes={"tags": ("a", "b")}) as child,
    ):
        child.add_event("retry", {"attempt": 2})
        child.set_status(Status(StatusCode.ERROR, "boom"))
    child_span = exporter.get_finished_spans()[0]
    row = dict(zip(COLUMNS, span_to_row(child_span), strict=True))
    assert row["trace_id"] == format(parent.get_span_context().trace_id, "032x")
    assert row["parent_span_id"] == format(parent.get_span_context().span_id, "016x")
    assert row["kind"] == "INTERNAL" and row["service_name"] == "labstream-test"
    assert row["status_code"] == "ERROR" and row["status_message"] == "boom"
    assert json.loads(row["attributes"]) == {"tags": ["a", "b"]}
    assert json.loads(row["events"])[0]["attributes"] == {"attempt": 2}
    assert row["end_time_unix_nano"] >= row["start_time_unix_nano"]


def test_attribute_names_are_the_current_messaging_conventions() -> None:
    """Every messaging name we set exists in the installed semantic-conventions package and
    is not marked deprecated there; every name we call deprecated is marked so."""
    import inspect

    from opentelemetry.semconv._incubating.attributes import messaging_attributes as registry

    source = inspect.getsource(registry)
    by_value = {value: name for name, value in vars(registry).items() if isinstance(value, str)}

    def doc(value: str) -> str:
        name = by_value[value]
        start = source.index(f"{name}: Final")
        return source[start:source.index('"""', source.index('"""', start) + 3)]

    current = [value for name, value in vars(semconv).items()
               if name.startswith("MESSAGING_") and isinstance(value, str)
               and value.startswith("messaging.") and value != "messaging.system"]
    assert "messaging.kafka.offset" in current
    for value in current:
        assert value in by_value, value
        assert "Deprecated" not in doc(value), value
    for old, new in semconv.DEPRECATED_NAMES.items():
        assert "Deprecated" in doc(old) and new in current
