"""The shared contracts: one definition of trace ids, headers, topic names and record bytes."""

from __future__ import annotations

import json

import pytest

from base.contracts import headers, records, topics, traceids
from explain.records import trace_id_of_record
from tracing.cli import normalize_trace_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UUID = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"


@pytest.mark.parametrize("text", [TRACE, TRACE.upper(), f"00-{TRACE}-00f067aa0ba902b7-01",
                                  UUID, f"  {UUID}  "])
def test_every_accepted_form_maps_to_the_same_32_hex_trace_id(text: str) -> None:
    assert traceids.trace_id_of(text) == TRACE


@pytest.mark.parametrize("text", ["", "exp-123", TRACE[:-1], "0" * 32,
                                  f"00-{'0' * 32}-00f067aa0ba902b7-01",
                                  f"{TRACE}x", "4bf92f35-77b3-4da6-a3ce-929d0e0e473"])
def test_anything_else_is_not_a_trace_id(text: str) -> None:
    assert traceids.trace_id_of(text) is None


def test_trace_and_explain_agree_on_a_beeline_uuid() -> None:
    """`labstream trace` and `labstream explain` used to disagree on beeline UUIDs."""
    assert normalize_trace_id(UUID) == TRACE

    class Record:
        headers = [("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())]

    assert trace_id_of_record(Record()) == TRACE


def test_the_beeline_mapping_keeps_uuid_digits_and_hashes_other_ids() -> None:
    assert traceids.beeline_hex_id(UUID, 32) == TRACE
    assert traceids.beeline_hex_id("abc", 16) == "0000000000000abc"
    hashed = traceids.beeline_hex_id("not-hex-at-all!", 32)
    assert len(hashed) == 32 and hashed == traceids.beeline_hex_id("not-hex-at-all!", 32)


def test_stored_forms_are_exact() -> None:
    assert traceids.is_trace_id(TRACE) and not traceids.is_trace_id(TRACE.upper())
    assert not traceids.is_trace_id(UUID)
    assert traceids.is_span_id("00f067aa0ba902b7") and not traceids.is_span_id("0" * 16)
    assert traceids.trace_id_of_traceparent(f"00-{TRACE}-00f067aa0ba902b7-01") == TRACE
    assert traceids.trace_id_of_traceparent(TRACE) is None


def test_headers_are_read_case_insensitively_and_null_values_are_absent() -> None:
    pairs = [("x-honeycomb-trace", b"1;trace_id=a"), ("traceparent", None),
             ("TraceParent", b"00-x")]
    assert headers.header_bytes(pairs, headers.BEELINE) == b"1;trace_id=a"
    assert headers.header_text(pairs, headers.TRACEPARENT) == "00-x"
    assert headers.header_bytes(pairs, headers.REPLAY_ID) is None
    assert headers.header_bytes(None, headers.REPLAY_ID) is None


def test_topic_names_follow_debezium_and_parse_back() -> None:
    assert topics.cdc_topic("lab", "public", "runs") == "lab.public.runs"
    assert topics.transaction_topic("lab") == "lab.transaction"
    assert topics.heartbeat_topic("lab") == "__labstream-heartbeat.lab"
    assert topics.routed_topic("lab.routed", "hplc.completed") == "lab.routed.hplc.completed"
    assert topics.dlq_topic("labstream-worker") == "labstream-worker.dlq"
    assert topics.table_of_cdc_topic("lab.public.runs") == ("public", "runs")
    assert topics.table_of_cdc_topic("lab.transaction") is None
    assert topics.table_of_cdc_topic("other.public.runs") is None


def test_record_bytes_are_recognised_by_their_first_byte() -> None:
    framed = records.frame_header(7) + b"body"
    assert records.framed_schema_id(framed) == 7
    assert records.framed_schema_id(b"{}") is None
    assert records.decode_record_bytes(framed, lambda data: ("avro", data[5:])) == ("avro", b"body")
    connect = json.dumps({"schema": {"type": "struct"}, "payload": {"id": 1}}).encode()
    assert records.decode_record_bytes(connect, lambda _: None) == {"id": 1}
    assert records.decode_record_bytes(b'{"outcome": "fired"}', lambda _: None) == {
        "outcome": "fired"}
    assert records.decode_record_bytes(b"job-1", lambda _: None, is_key=True) == "job-1"
    assert records.decode_record_bytes(None, lambda _: None) is None
    with pytest.raises(records.UndecodableBytes, match=r"lab\.public\.runs: value is neither"):
        records.decode_record_bytes(b"\xff\xfe", lambda _: None, where="lab.public.runs")
