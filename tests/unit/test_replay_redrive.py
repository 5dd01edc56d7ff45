"""Replay headers, the new trace linked to the original, rate limiting and resume arithmetic."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from replay import redrive as redrive_module
from replay import store
from replay.headers import (
    REPLAY_ID,
    REPLAY_OF,
    RERUN_SUCCEEDED,
    build_replay_headers,
    current_context,
    parse_replay_of,
    replay_of,
    replay_span,
)
from replay.record import ReplayRecord
from replay.redrive import RateLimiter, Redrive, RedriveOptions, resume_plans
from replay.selection import PartitionPlan, ScanStats

ORIGINAL_TRACE = "0af7651916cd43dd8448eb211c80319c"
ORIGINAL_PARENT = f"00-{ORIGINAL_TRACE}-b7ad6b7169203331-01"


class Spans:
    """A private provider (the global one belongs to whoever configured tracing)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("test")

    def get_finished_spans(self) -> Any:
        return self.exporter.get_finished_spans()


@pytest.fixture
def spans() -> Spans:
    return Spans()


def names(headers: list[tuple[str, bytes]]) -> list[str]:
    return [name.lower() for name, _ in headers]


def test_replay_of_round_trip() -> None:
    assert replay_of("lab.public.runs", 3, 42) == "lab.public.runs/3/42"
    assert parse_replay_of("lab.public.runs/3/42") == ("lab.public.runs", 3, 42)


def test_headers_are_marked_and_keep_the_rest(spans: Spans, monkeypatch) -> None:
    monkeypatch.setenv("LABSTREAM_REPLAY_CONSENT_KEY", "unit-test-key")
    original = [
        ("traceparent", ORIGINAL_PARENT.encode()),
        ("tracestate", b"vendor=1"),
        ("X-Honeycomb-Trace", b"1;trace_id=abc,parent_id=def"),
        ("lab-origin", b"front-end"),
        (REPLAY_ID, b"rp-old"),
        (REPLAY_OF, b"lab.public.runs/0/1"),
    ]
    tracer = spans.tracer
    with replay_span(
        tracer,
        topic="t",
        original_headers=original,
        original_coordinates="lab.public.runs/0/7",
        replay_id="rp-new",
    ):
        headers = build_replay_headers(
            original,
            replay_id="rp-new",
            original_coordinates="lab.public.runs/0/7",
            context=current_context(),
            rerun_succeeded=True,
        )
    listed = names(headers)
    assert listed.count("traceparent") == 1
    assert "tracestate" not in listed and "x-honeycomb-trace" not in listed
    assert listed.count(REPLAY_ID) == 1 and listed.count(REPLAY_OF) == 1
    values = dict(headers)
    assert values["lab-origin"] == b"front-end"
    assert values[REPLAY_ID] == b"rp-new"
    assert values[REPLAY_OF] == b"lab.public.runs/0/7"
    assert values[RERUN_SUCCEEDED].startswith(b"v1.")  # signed: streams/replay_consent.py
    assert ORIGINAL_TRACE not in values["traceparent"].decode()


def test_replay_span_is_a_new_root_linked_to_the_original(spans: Spans) -> None:
    tracer = spans.tracer
    original = [("traceparent", ORIGINAL_PARENT.encode())]
    with replay_span(
        tracer,
        topic="lab.public.runs",
        original_headers=original,
        original_coordinates="lab.public.runs/0/7",
        replay_id="rp-1",
    ):
        headers = build_replay_headers(
            original,
            replay_id="rp-1",
            original_coordinates="lab.public.runs/0/7",
            context=current_context(),
        )
    (span,) = spans.get_finished_spans()
    assert span.name == "replay lab.public.runs"
    assert span.parent is None
    assert span.context.trace_id != int(ORIGINAL_TRACE, 16)
    assert [format(link.context.trace_id, "032x") for link in span.links] == [ORIGINAL_TRACE]
    new_parent = dict(headers)["traceparent"].decode()
    assert new_parent.split("-")[1] == format(span.context.trace_id, "032x")
    assert new_parent.split("-")[2] == format(span.context.span_id, "016x")
    assert RERUN_SUCCEEDED not in names(headers)


def test_record_without_trace_gets_a_new_one_and_no_link(spans: Spans) -> None:
    tracer = spans.tracer
    with replay_span(
        tracer, topic="t", original_headers=[], original_coordinates="t/0/0", replay_id="rp-1"
    ):
        headers = build_replay_headers(
            [], replay_id="rp-1", original_coordinates="t/0/0", context=current_context()
        )
    (span,) = spans.get_finished_spans()
    assert list(span.links) == []
    assert names(headers).count("traceparent") == 1


def test_rate_limiter_schedules_without_drift() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]
    assert now[0] == pytest.approx(101.0)
    RateLimiter(None, clock=lambda: 0.0, sleep=sleep).wait()  # unlimited: no sleep
    assert len(slept) == 4


def test_resume_plans_start_after_the_last_handled_offset() -> None:
    plans = [
        PartitionPlan("t", 0, 10, 20),
        PartitionPlan("t", 1, 0, 5),
        PartitionPlan("t", 2, 7, 9),
    ]
    resumed = resume_plans(plans, {"t/0": 14, "t/1": 4, "t/9": 3})
    assert resumed == [PartitionPlan("t", 0, 15, 20), PartitionPlan("t", 2, 7, 9)]
    assert resume_plans(plans, {}) == plans


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class FakeProducer:
    """Acknowledges on flush, like librdkafka; `fail_on` makes one record fail."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.pending: list[tuple[dict, Any]] = []
        self.log: list[dict] = []
        self.ends: dict[tuple[str, int], int] = {}
        self.fail_on = fail_on

    def produce(
        self,
        topic: str,
        *,
        key: Any,
        value: Any,
        headers: Any,
        on_delivery: Any,
        partition: int = 0,
    ) -> None:
        self.pending.append(
            (
                {
                    "topic": topic,
                    "partition": partition,
                    "key": key,
                    "value": value,
                    "headers": headers,
                },
                on_delivery,
            )
        )

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for message, callback in self.pending:
            where = (message["topic"], message["partition"])
            offset = self.ends.get(where, 0)
            if self.fail_on is not None and len(self.log) == self.fail_on:
                callback("broker said no", FakeMessage(*where, -1))
                continue
            self.ends[where] = offset + 1
            self.log.append(message)
            callback(None, FakeMessage(*where, offset))
        self.pending.clear()
        return 0


def records(count: int, partition: int = 0) -> list[ReplayRecord]:
    return [
        ReplayRecord(
            "src",
            partition,
            offset,
            0,
            f"k{offset}".encode(),
            f"v{offset}".encode(),
            [],
            key={"id": offset},
            value={"op": "c"},
        )
        for offset in range(count)
    ]


def run_redrive(
    monkeypatch: pytest.MonkeyPatch,
    items: list[ReplayRecord],
    *,
    producer: FakeProducer,
    already: set[str] | None = None,
    batch_size: int = 3,
) -> tuple[Redrive, list[dict]]:
    checkpoints: list[dict] = []
    monkeypatch.setattr(
        store,
        "record_progress",
        lambda conn, row: checkpoints.append(dict(row.progress, produced=row.produced)),
    )
    row = store.ReplayRow(id="rp-test", mode="execute", selection={})
    driver = Redrive(
        row=row,
        options=RedriveOptions(target_topic="dst", batch_size=batch_size, batch_seconds=3600),
        producer=producer,
        conn=None,
        partitions_of=lambda topic: 1,  # type: ignore[arg-type]
        already_produced=already,
    )
    stats = ScanStats()

    def scanned() -> Any:
        for record in items:
            stats.scanned += 1
            stats.positions[(record.topic, record.partition)] = record.offset
            yield record

    driver.run(scanned(), stats)
    return driver, checkpoints


def test_redrive_checkpoints_only_acknowledged_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    driver, checkpoints = run_redrive(monkeypatch, records(7), producer=producer)
    assert [m["value"] for m in producer.log] == [f"v{i}".encode() for i in range(7)]
    assert checkpoints == [
        {"src/0": 2, "produced": 3},
        {"src/0": 5, "produced": 6},
        {"src/0": 6, "produced": 7},
    ]
    assert driver.row.target_positions == {"dst/0": 7}


def test_redrive_skips_what_a_crashed_run_already_produced(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    driver, _ = run_redrive(
        monkeypatch, records(5), producer=producer, already={"src/0/0", "src/0/1"}
    )
    assert [m["value"] for m in producer.log] == [b"v2", b"v3", b"v4"]
    assert driver.row.produced == 5  # the two found in the target count as produced


def test_undecodable_records_are_counted_not_produced(monkeypatch: pytest.MonkeyPatch) -> None:
    items = records(3)
    items[1].decode_error = "SerializationError: unknown schema id 99"
    producer = FakeProducer()
    driver, _ = run_redrive(monkeypatch, items, producer=producer)
    assert [m["value"] for m in producer.log] == [b"v0", b"v2"]
    assert driver.undecodable == ["src/0/1: SerializationError: unknown schema id 99"]


def test_failed_delivery_stops_before_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(redrive_module.DeliveryFailed):
        run_redrive(monkeypatch, records(5), producer=FakeProducer(fail_on=1))


def test_interrupted_checkpoint_keeps_the_record_in_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[dict] = []
    monkeypatch.setattr(
        store, "record_progress", lambda conn, row: recorded.append(dict(row.progress))
    )
    row = store.ReplayRow(id="rp-test", mode="execute", selection={}, target_positions={"dst/0": 0})
    producer = FakeProducer()
    driver = Redrive(
        row=row,
        options=RedriveOptions(target_topic="dst"),
        producer=producer,
        conn=None,
        partitions_of=lambda topic: 1,
    )  # type: ignore[arg-type]
    driver.produce(records(1)[0])
    driver.in_hand = records(2)[1]  # Ctrl-C arrived while offset 1 was being handled
    stats = ScanStats(positions={("src", 0): 1})
    driver.checkpoint(stats, interrupted=True)
    assert recorded == [{"src/0": 0}]
    assert row.target_positions == {"dst/0": 0}  # not advanced: a resume re-reads the target
