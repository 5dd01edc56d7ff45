"""The trace context written in a transaction comes back out of logical decoding."""

from __future__ import annotations

import psycopg
import psycopg2
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from tracing_slots import MESSAGE_LINE, SlotReader, temporary_slot

from tracing.propagation import context_from_db_messages, emit_db_trace_context

pytestmark = pytest.mark.integration

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def remote_context():
    span_context = SpanContext(
        TRACE_ID,
        SPAN_ID,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("lab", "api")]),
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


@pytest.fixture
def slot_reader(database_url: str, unique_name: str):
    """A temporary logical slot (test_decoding) on its own session; dropped after."""
    with temporary_slot(database_url, f"tr_{unique_name}") as slot:
        yield slot


def messages_in(slot: SlotReader) -> dict[str, str]:
    found = {}
    for transactional, prefix, content in slot.messages():
        assert transactional, "trace context must be a transactional message"
        found[prefix] = content
    return found


def assert_round_trip(messages: dict[str, str]) -> None:
    assert messages == {"traceparent": TRACEPARENT, "tracestate": "lab=api"}
    span_context = trace.get_current_span(context_from_db_messages(messages)).get_span_context()
    assert (span_context.trace_id, span_context.span_id) == (TRACE_ID, SPAN_ID)
    assert span_context.trace_state.get("lab") == "api"


def test_psycopg3_transaction_carries_the_trace_context(database_url, slot_reader) -> None:
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        assert emit_db_trace_context(cursor, remote_context()) is True
        cursor.execute("SELECT 1")
    lines = slot_reader.changes()
    assert lines[0].startswith("BEGIN") and lines[-1].startswith("COMMIT")
    # the messages sit inside the transaction, between BEGIN and COMMIT
    inside = [MESSAGE_LINE.match(line) for line in lines[1:-1]]
    assert_round_trip({m.group(2): m.group(3) for m in inside if m and m.group(1) == "1"})


def test_psycopg2_cursor_works_too(database_url, slot_reader) -> None:
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cursor:
            assert emit_db_trace_context(cursor, remote_context()) is True
    finally:
        conn.close()
    assert_round_trip(messages_in(slot_reader))


def test_a_rolled_back_transaction_emits_nothing(database_url, slot_reader) -> None:
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cursor:
            emit_db_trace_context(cursor, remote_context())
        conn.rollback()
    assert messages_in(slot_reader) == {}


def test_the_current_span_is_used_by_default(database_url, slot_reader) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with (
        tracer.start_as_current_span("insert experiment") as span,
        psycopg.connect(database_url) as conn,
        conn.cursor() as cursor,
    ):
        emit_db_trace_context(cursor)
    messages = messages_in(slot_reader)
    assert messages["traceparent"].split("-")[1] == format(span.get_span_context().trace_id, "032x")
    assert "tracestate" not in messages  # empty tracestate is not emitted
