"""The pure parts of explain's fact gathering: ids, CDC records and decisions from Kafka bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from explain.model import WorkerProgress
from explain.records import cdc_record, decision_record, trace_id_of, trace_id_of_record

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


@dataclass
class FakeRecord:  # the fields of kafka-python's ConsumerRecord that explain reads
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def connect_json(payload: Any) -> bytes:
    return json.dumps({"schema": {"type": "struct"}, "payload": payload}).encode()


@pytest.mark.parametrize(("text", "expected"), [
    (TRACE, TRACE), (TRACE.upper(), TRACE), (TRACEPARENT, TRACE), (f"  {TRACEPARENT} ", TRACE),
    ("exp-123", None), (TRACE[:-1], None), ("00-xyz-00f067aa0ba902b7-01", None),
])
def test_trace_id_of(text, expected):
    assert trace_id_of(text) == expected


def test_cdc_record_reads_status_commit_time_and_trace_header():
    value = {"op": "u", "before": {"id": "run-1", "status": "running"},
             "after": {"id": "run-1", "status": "completed"},
             "source": {"ts_ms": 1_000, "table": "runs"}, "ts_ms": 1_010}
    raw = FakeRecord("lab.public.runs", 2, 40, 1_025, connect_json({"id": "run-1"}),
                     connect_json(value), [("traceparent", TRACEPARENT.encode()),
                                           ("tracestate", b"")])
    record = cdc_record(raw, "runs", deserializer=None)
    assert record is not None
    assert (record.key, record.op, record.status) == ("run-1", "u", "completed")
    assert record.delay_ms == 25 and record.coordinates == "lab.public.runs/2/40"
    assert record.trace_id == TRACE and record.headers == ("traceparent", "tracestate")


def test_a_replayed_copy_names_its_original_and_has_no_delay_after_commit():
    """A replay produced minutes after the commit: not "slowest 169493 ms after commit"."""
    value = {"op": "u", "after": {"id": "run-1", "status": "completed"},
             "source": {"ts_ms": 1_000}}
    raw = FakeRecord("lab.public.runs", 0, 41, 170_493, connect_json({"id": "run-1"}),
                     connect_json(value), [("labstream-replay-id", b"rp-1"),
                                           ("labstream-replay-of", b"lab.public.runs/0/7")])
    record = cdc_record(raw, "runs", deserializer=None)
    assert record is not None and record.replay_of == "lab.public.runs/0/7"
    assert record.delay_ms is None


def test_cdc_record_of_a_delete_uses_before_and_a_tombstone_is_none():
    value = {"op": "d", "before": {"id": "run-1", "status": "failed"}, "after": None,
             "source": {}}
    raw = FakeRecord("lab.public.runs", 0, 1, 5, connect_json({"id": "run-1"}),
                     connect_json(value))
    record = cdc_record(raw, "runs", deserializer=None)
    assert record is not None and record.status == "failed" and record.trace_id is None
    assert record.delay_ms is None
    assert cdc_record(replace_value(raw, None), "runs", deserializer=None) is None


def replace_value(raw: FakeRecord, value: bytes | None) -> FakeRecord:
    return FakeRecord(raw.topic, raw.partition, raw.offset, raw.timestamp, raw.key, value)


def test_decision_record_from_the_worker_json():
    document = {"outcome": "fired", "reason": "fired", "detail": "rule r fired",
                "event_kind": "hplc.completed", "event_id": "runs:{}:1", "rule_id": "r",
                "job_key": "r:abc", "tenant_id": "acme", "experiment_id": "exp-1",
                "command": ["echo", "hi"], "decided_at_ms": 5,
                "origin": {"topic": "lab.public.runs", "partition": 0, "offset": 7},
                "job_id": "job-1", "job_created": True, "job_status": "queued"}
    raw = FakeRecord("lab.decisions", 1, 3, 9, b"r:abc", json.dumps(document).encode(),
                     [("traceparent", TRACEPARENT.encode())])
    decision = decision_record(raw)
    assert decision is not None
    assert decision.origin == "lab.public.runs/0/7" and decision.job_id == "job-1"
    assert decision.trace_id == TRACE and decision.command == ("echo", "hi")
    assert decision_record(replace_value(raw, b"not json")) is None
    assert decision_record(replace_value(raw, b'{"no": "outcome"}')) is None


def test_a_traceparent_header_that_is_not_valid_gives_no_trace():
    raw = FakeRecord("t", 0, 0, 0, None, b"{}", [("traceparent", b"garbage")])
    assert trace_id_of_record(raw) is None


def test_worker_progress_processed_compares_the_committed_offset():
    from explain.model import CdcRecord

    record = CdcRecord("lab.public.runs", 0, 21, 0, "runs", "run-1", "u", "completed", 0, None)
    assert WorkerProgress("g", "d", {"lab.public.runs/0": 22}).processed(record) is True
    assert WorkerProgress("g", "d", {"lab.public.runs/0": 21}).processed(record) is False
    assert WorkerProgress("g", "d", {"lab.public.experiments/0": 99}).processed(record) is False
    assert WorkerProgress("g", "d", None).processed(record) is None
