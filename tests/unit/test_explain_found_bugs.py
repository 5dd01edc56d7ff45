"""Bugs found while building `labstream explain` end to end (in other areas' code).

The worker's spans never reached the lab-DB span store: a Confluent-framed Avro key
starts with NUL bytes, which are valid UTF-8, so `messaging.kafka.message.key` held
U+0000; PostgreSQL text/jsonb cannot store it, so every batch with such a span
failed and was dropped whole.
"""

from __future__ import annotations

import json

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tracing import semconv
from tracing.spanstore import span_to_row

AVRO_KEY = b"\x00\x00\x00\x00\x05\x0erun-1"  # magic 0, schema id 5, Avro string "run-1"


def test_a_binary_key_with_nul_bytes_is_shown_as_hex():
    assert semconv.key_to_str(AVRO_KEY) == AVRO_KEY.hex()
    assert semconv.key_to_str(b"run-1") == "run-1"


def test_a_span_row_never_holds_a_nul_character():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("process\x00x") as span:
        span.set_attribute("messaging.kafka.message.key", "\x00\x00run-1")
        span.set_attribute("several", ("a\x00", "b"))
        span.add_event("bad\x00event", {"exception.message": "bytes \x00 here"})
        span.set_status(Status(StatusCode.ERROR, "cannot decode \x00\x01"))
    row = span_to_row(memory.get_finished_spans()[0])
    for value in row:
        if isinstance(value, str):
            assert "\x00" not in value and "\\u0000" not in value, value
    attributes = json.loads(row[10])
    assert attributes["messaging.kafka.message.key"] == "\ufffd\ufffdrun-1"
    assert attributes["several"] == ["a\ufffd", "b"]
