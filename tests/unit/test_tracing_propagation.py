"""Round trips for every hop the trace context crosses (no services needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from tracing import propagation

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_FIELDS = {"traceparent", "tracestate"}


def remote_context(trace_state: TraceState | None = None):
    span_context = SpanContext(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=trace_state or TraceState(),
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def ids(context) -> tuple[int, int]:
    span_context = trace.get_current_span(context).get_span_context()
    return span_context.trace_id, span_context.span_id


# -- Kafka headers --------------------------------------------------------------------------


def test_inject_then_extract_gives_the_same_span_context() -> None:
    headers = propagation.inject_headers([], remote_context())
    assert ("traceparent", TRACEPARENT.encode()) in headers
    assert ids(propagation.extract_headers(headers)) == (TRACE_ID, SPAN_ID)


def test_inject_replaces_existing_trace_headers_without_duplicates() -> None:
    stale = "00-11111111111111111111111111111111-2222222222222222-01"
    headers = [("Traceparent", stale.encode()), ("tracestate", b"old=1"), ("key", b"v")]
    result = propagation.inject_headers(headers, remote_context(TraceState([("lab", "x")])))
    assert result is headers  # a list is updated in place
    names = [name.lower() for name, _ in result]
    assert names.count("traceparent") == 1
    assert names.count("tracestate") == 1
    assert ("key", b"v") in result
    assert dict(result)["tracestate"] == b"lab=x"
    assert ids(propagation.extract_headers(result)) == (TRACE_ID, SPAN_ID)


def test_injecting_twice_never_duplicates() -> None:
    headers = propagation.inject_headers(None, remote_context())
    propagation.inject_headers(headers, remote_context())
    assert [name for name, _ in headers].count("traceparent") == 1


def test_inject_uses_the_current_span_by_default() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("send") as span:
        headers = propagation.inject_headers(None)
    span_context = span.get_span_context()
    assert ids(propagation.extract_headers(headers)) == (
        span_context.trace_id,
        span_context.span_id,
    )


def test_inject_without_a_span_leaves_headers_unchanged() -> None:
    headers = [("key", b"v")]
    assert propagation.inject_headers(headers) == [("key", b"v")]


def test_inject_accepts_a_dict_and_returns_byte_tuples() -> None:
    result = propagation.inject_headers({"key": "v"}, remote_context())
    assert isinstance(result, list)
    assert ("key", b"v") in result
    assert all(isinstance(value, bytes) for _, value in result)


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        {},
        [("traceparent", b"not-a-traceparent")],
        [("traceparent", b"00-00000000000000000000000000000000-00f067aa0ba902b7-01")],
        [("traceparent", b"\xff\xfe\x00garbage")],
        [("traceparent", None)],
    ],
)
def test_malformed_or_missing_headers_give_no_span_context(headers) -> None:
    context = propagation.extract_headers(headers)
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_undecodable_header_is_ignored_but_the_valid_one_is_used() -> None:
    headers = [("other", b"\xff\xfe"), ("traceparent", TRACEPARENT.encode())]
    assert ids(propagation.extract_headers(headers)) == (TRACE_ID, SPAN_ID)


def test_extract_accepts_a_dict_with_bytes_or_str() -> None:
    assert ids(propagation.extract_headers({"traceparent": TRACEPARENT})) == (TRACE_ID, SPAN_ID)
    assert ids(propagation.extract_headers({"traceparent": TRACEPARENT.encode()})) == (
        TRACE_ID,
        SPAN_ID,
    )


def test_kafka_headers_fall_back_to_the_beeline_header() -> None:
    header = "1;trace_id=4bf92f3577b34da6a3ce929d0e0e4736,parent_id=00f067aa0ba902b7,context=e30="
    context = propagation.extract_headers([("X-Honeycomb-Trace", header.encode())])
    assert ids(context) == (TRACE_ID, SPAN_ID)


# -- database transaction -------------------------------------------------------------------


class RecordingCursor:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, str]]] = []

    def execute(self, sql: str, params: tuple[str, str]) -> None:
        self.calls.append((sql, params))


def test_emit_db_trace_context_emits_transactional_messages() -> None:
    cursor = RecordingCursor()
    assert propagation.emit_db_trace_context(cursor, remote_context(TraceState([("lab", "x")])))
    assert cursor.calls == [
        ("SELECT pg_logical_emit_message(true, %s, %s)", ("traceparent", TRACEPARENT)),
        ("SELECT pg_logical_emit_message(true, %s, %s)", ("tracestate", "lab=x")),
    ]


def test_emit_db_trace_context_skips_empty_tracestate() -> None:
    cursor = RecordingCursor()
    propagation.emit_db_trace_context(cursor, remote_context())
    assert [params[0] for _, params in cursor.calls] == ["traceparent"]


def test_emit_db_trace_context_is_a_no_op_without_a_span() -> None:
    cursor = RecordingCursor()
    assert propagation.emit_db_trace_context(cursor) is False
    assert cursor.calls == []


def test_db_messages_round_trip_bytes_and_text() -> None:
    cursor = RecordingCursor()
    propagation.emit_db_trace_context(cursor, remote_context(TraceState([("lab", "x")])))
    messages = {params[0]: params[1].encode() for _, params in cursor.calls}
    context = propagation.context_from_db_messages(messages)
    assert ids(context) == (TRACE_ID, SPAN_ID)
    assert trace.get_current_span(context).get_span_context().trace_state.get("lab") == "x"
    assert ids(propagation.context_from_db_messages({"traceparent": TRACEPARENT})) == (
        TRACE_ID,
        SPAN_ID,
    )


def test_db_messages_without_traceparent_give_an_empty_context() -> None:
    context = propagation.context_from_db_messages({"other": b"x", "tracestate": b"a=b"})
    assert not trace.get_current_span(context).get_span_context().is_valid


# -- job environment ------------------------------------------------------------------------


def test_job_environment_round_trip() -> None:
    env = propagation.job_environment(remote_context(TraceState([("lab", "x")])))
    assert env == {"TRACEPARENT": TRACEPARENT, "TRACESTATE": "lab=x"}
    context = propagation.context_from_environment(env)
    assert ids(context) == (TRACE_ID, SPAN_ID)


def test_job_environment_is_empty_without_a_span() -> None:
    assert propagation.job_environment() == {}
    context = propagation.context_from_environment({"PATH": "/bin"})
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_context_from_environment_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEPARENT", TRACEPARENT)
    assert ids(propagation.context_from_environment()) == (TRACE_ID, SPAN_ID)


def test_spans_started_in_a_job_join_the_launchers_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    job_context = propagation.context_from_environment({"TRACEPARENT": TRACEPARENT})
    with tracer.start_as_current_span("job", context=job_context) as span:
        pass
    assert span.get_span_context().trace_id == TRACE_ID
    parent = getattr(span, "parent", None)  # an SDK span
    assert parent is not None and parent.span_id == SPAN_ID


# -- HTTP -------------------------------------------------------------------------------------


def test_http_w3c_wins_over_beeline() -> None:
    headers = {
        "Traceparent": TRACEPARENT,
        "X-Honeycomb-Trace": "1;trace_id=abc,parent_id=def,context=e30=",
    }
    assert ids(propagation.extract_http_headers(headers)) == (TRACE_ID, SPAN_ID)


def test_http_inject_adds_w3c_and_beeline_headers() -> None:
    headers = propagation.inject_http_headers({}, remote_context())
    assert headers["traceparent"] == TRACEPARENT
    assert headers["X-Honeycomb-Trace"].startswith(
        "1;trace_id=4bf92f3577b34da6a3ce929d0e0e4736,parent_id=00f067aa0ba902b7,"
    )
    assert ids(
        propagation.extract_http_headers([("x-honeycomb-trace", headers["X-Honeycomb-Trace"])])
    ) == (
        TRACE_ID,
        SPAN_ID,
    )


def test_trace_id_hex() -> None:
    assert propagation.trace_id_hex(remote_context()) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert propagation.trace_id_hex() is None


def test_configure_job_logging_makes_log_lines_carry_the_trace_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import contextvars
    import logging

    from base import logs

    monkeypatch.setattr(logs, "_CONFIGURED", True)  # keep pytest's own log handlers

    def inside_the_job() -> tuple[str | None, str]:
        trace_id = propagation.configure_job_logging({"TRACEPARENT": TRACEPARENT})
        record = logging.LogRecord("job", logging.INFO, __file__, 1, "step done", None, None)
        return trace_id, logs.KeyValueFormatter().format(record)

    # a copied context: the attach must not leak into the other tests
    trace_id, line = contextvars.copy_context().run(inside_the_job)
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line.endswith("trace_id=4bf92f3577b34da6a3ce929d0e0e4736")
    assert propagation.configure_job_logging({}) is None


header_names = st.sampled_from(["traceparent", "TraceParent", "tracestate", "key", "x-other", ""])
header_values = st.one_of(st.none(), st.binary(max_size=60))


@given(st.lists(st.tuples(header_names, header_values), max_size=8))
def test_inject_keeps_other_headers_and_never_duplicates(headers) -> None:
    others = [(name, value) for name, value in headers if name.lower() not in TRACE_FIELDS]
    result = propagation.inject_headers(list(headers), remote_context(TraceState([("a", "b")])))
    names = [name.lower() for name, _ in result]
    assert names.count("traceparent") == 1 and names.count("tracestate") == 1
    assert [pair for pair in result if pair[0].lower() not in TRACE_FIELDS] == others
    assert ids(propagation.extract_headers(result)) == (TRACE_ID, SPAN_ID)


@given(st.lists(st.tuples(st.text(max_size=12), header_values), max_size=8))
def test_extract_never_raises_on_arbitrary_headers(headers) -> None:
    propagation.extract_headers(headers)


# -- outbound X-Honeycomb-Trace (LABSTREAM_TRACING_BEELINE_HEADERS) ---------------------------


@pytest.fixture
def beeline_out():
    propagation.set_beeline_outbound(True)
    yield
    propagation.set_beeline_outbound(False)


def test_beeline_header_is_off_by_default() -> None:
    assert not propagation.beeline_outbound()
    assert [name for name, _ in propagation.inject_headers([], remote_context())] == \
        ["traceparent"]
    assert "HONEYCOMB_TRACE" not in propagation.job_environment(remote_context())


def test_kafka_headers_and_job_environment_carry_the_beeline_header(beeline_out) -> None:
    import beeline.propagation.honeycomb as honeycomb

    headers = dict(propagation.inject_headers([], remote_context()))
    value = headers["X-Honeycomb-Trace"].decode()
    # what the honeycomb-beeline package itself reads: same trace, our span as parent
    trace_id, parent_id, _ = honeycomb.unmarshal_propagation_context(value)
    assert (trace_id, parent_id) == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")
    env = propagation.job_environment(remote_context())
    assert env["HONEYCOMB_TRACE"] == value and env["TRACEPARENT"] == TRACEPARENT
    # and back in, a beeline-only consumer's header gives the same ids
    assert ids(propagation.extract_headers([("X-Honeycomb-Trace", value)])) == (TRACE_ID, SPAN_ID)


def test_configure_tracing_sets_the_switch_from_settings(monkeypatch) -> None:
    from tracing.settings import TracingSettings
    from tracing.setup import configure_tracing

    monkeypatch.setenv("LABSTREAM_TRACING_ENABLED", "false")
    configure_tracing("labstream-test", settings=TracingSettings(beeline_headers=True))
    try:
        assert propagation.beeline_outbound()
    finally:
        propagation.set_beeline_outbound(False)
