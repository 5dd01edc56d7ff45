"""Selection arguments, offset planning against a fake consumer, and per-record criteria."""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import TopicPartition

from replay.exceptions import EmptySelection, FilterSyntaxError, SelectionError
from replay.record import ReplayRecord
from replay.selection import (
    PartitionPlan,
    PartitionRange,
    Selection,
    build_selection,
    matches,
    matches_raw,
    plan,
    resolve_topics,
)
from replay.timespec import to_millis

NOW = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
OffsetAndTimestamp = namedtuple("OffsetAndTimestamp", "offset timestamp")
Raw = namedtuple("Raw", "topic partition offset timestamp key value headers")


class FakeConsumer:
    """Two partitions of lab.public.runs: offsets 10..19 and 0..4, one record per second."""

    def __init__(self) -> None:
        self.data = {
            TopicPartition("lab.public.runs", 0): [
                (o, 1_000_000 + (o - 10) * 1000) for o in range(10, 20)
            ],
            TopicPartition("lab.public.runs", 1): [(o, 1_000_500 + o * 1000) for o in range(0, 5)],
            TopicPartition("lab.public.experiments", 0): [],
        }
        self.assigned: list[Any] = []
        self.positions: dict[Any, int] = {}

    def topics(self) -> set[str]:
        return {tp.topic for tp in self.data}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.data if tp.topic == topic}

    def beginning_offsets(self, tps: list[Any]) -> dict:
        return {tp: (self.data[tp][0][0] if self.data[tp] else 0) for tp in tps}

    def end_offsets(self, tps: list[Any]) -> dict:
        return {tp: (self.data[tp][-1][0] + 1 if self.data[tp] else 0) for tp in tps}

    def offsets_for_times(self, wanted: dict) -> dict:
        found = {}
        for tp, millis in wanted.items():
            hits = [o for o, ts in self.data[tp] if ts >= millis]
            found[tp] = OffsetAndTimestamp(hits[0], millis) if hits else None
        return found

    def assign(self, tps: list[Any]) -> None:
        self.assigned = list(tps)

    def resume(self, *tps: Any) -> None:
        pass

    def unsubscribe(self) -> None:
        self.assigned = []

    def pause(self, *tps: Any) -> None:
        pass

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset

    def poll(self, timeout_ms: int = 0, max_records: int = 1) -> dict:
        for tp in self.assigned:
            for offset, ts in self.data[tp]:
                if offset >= self.positions.get(tp, 0):
                    self.positions[tp] = offset + 1
                    return {tp: [Raw(tp.topic, tp.partition, offset, ts, b"k", b"v", [])]}
        return {}


def test_partition_ranges() -> None:
    assert PartitionRange.parse("lab.public.runs:2:10-20") == PartitionRange(
        "lab.public.runs", 2, 10, 20
    )
    assert PartitionRange.parse("lab.public.runs:2:10-") == PartitionRange(
        "lab.public.runs", 2, 10, None
    )
    assert PartitionRange.parse("lab.public.runs:2:10") == PartitionRange(
        "lab.public.runs", 2, 10, 10
    )
    assert PartitionRange.parse("weird:name:0:1-2").topic == "weird:name"
    for bad in [
        "lab.public.runs",
        "lab.public.runs:x:1-2",
        "lab.public.runs:0:",
        "t:0:5-2",
        "t:0:-3",
    ]:
        with pytest.raises(SelectionError, match="--offsets"):
            PartitionRange.parse(bad)


def test_build_selection_resolves_times_and_checks_options() -> None:
    selection = build_selection(
        topics=["lab.public.runs"],
        from_text="-2h",
        to_text="now",
        ops=["c,u", "u"],
        keys=["run-1"],
        trace_id="0AF7651916CD43DD8448EB211C80319C",
        filter_text="op == 'u'",
        now=NOW,
    )
    assert selection.from_ms == to_millis(NOW) - 2 * 3600 * 1000
    assert selection.to_ms == to_millis(NOW)
    assert selection.ops == ("c", "u")
    assert selection.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert Selection.from_json(selection.to_json()) == selection


@pytest.mark.parametrize(
    ("values", "option"),
    [
        ({}, "topic"),
        ({"topics": ["t"], "from_text": "-1h", "to_text": "-2h"}, "--to"),
        ({"topics": ["t"], "ops": ["x"]}, "--op"),
        ({"topics": ["t"], "trace_id": "nothex"}, "--trace"),
        ({"topics": ["t"], "limit": 0}, "--limit"),
        ({"topics": ["t"], "from_text": "soon"}, "--from"),
    ],
)
def test_bad_selection_options(values: dict, option: str) -> None:
    with pytest.raises(SelectionError) as info:
        build_selection(now=NOW, **values)
    assert option in info.value.message
    assert info.value.hint


def test_bad_filter_fails_before_any_io() -> None:
    with pytest.raises(FilterSyntaxError):
        build_selection(topics=["t"], filter_text="after.kind ==")


def test_unknown_topic_lists_near_matches() -> None:
    with pytest.raises(SelectionError) as info:
        resolve_topics(["lab.public.run"], ["lab.public.runs", "lab.public.experiments", "x"])
    assert "lab.public.runs" in (info.value.hint or "")
    assert resolve_topics(["lab.public.*"], ["lab.public.runs", "lab.public.a", "other"]) == [
        "lab.public.a",
        "lab.public.runs",
    ]


def test_plan_whole_topic_time_window_and_ranges() -> None:
    consumer = FakeConsumer()
    whole = plan(Selection(topics=("lab.public.runs",)), consumer)
    assert whole == [
        PartitionPlan("lab.public.runs", 0, 10, 20),
        PartitionPlan("lab.public.runs", 1, 0, 5),
    ]
    # window 1_003_000..1_005_000 inclusive: p0 offsets 13..15, p1 offsets 3 and 4
    windowed = plan(
        Selection(topics=("lab.public.runs",), from_ms=1_003_000, to_ms=1_005_000), consumer
    )
    assert windowed == [
        PartitionPlan("lab.public.runs", 0, 13, 16),
        PartitionPlan("lab.public.runs", 1, 3, 5),
    ]
    ranged = plan(Selection(ranges=(PartitionRange("lab.public.runs", 0, 12, 14),)), consumer)
    assert ranged == [PartitionPlan("lab.public.runs", 0, 12, 15)]
    open_ended = plan(Selection(ranges=(PartitionRange("lab.public.runs", 1, 3, None),)), consumer)
    assert open_ended == [PartitionPlan("lab.public.runs", 1, 3, 5)]


def test_plan_rejects_missing_partition() -> None:
    with pytest.raises(SelectionError, match="no partition 7"):
        plan(Selection(ranges=(PartitionRange("lab.public.runs", 7, 0, 1),)), FakeConsumer())


def test_empty_window_says_which_window_and_the_topic_bounds() -> None:
    with pytest.raises(EmptySelection) as info:
        plan(
            Selection(topics=("lab.public.runs", "lab.public.experiments"), from_ms=2_000_000),
            FakeConsumer(),
        )
    message = info.value.message
    assert "1970-01-01T00:33:20.000Z" in message  # the asked window start
    assert "lab.public.runs holds 1970-01-01T00:16:40.000Z .. 1970-01-01T00:16:49.000Z" in message
    assert "lab.public.experiments is empty" in message


def make_record(**overrides: Any) -> ReplayRecord:
    record = ReplayRecord(
        topic="lab.public.runs",
        partition=0,
        offset=5,
        timestamp=1_000,
        key_bytes=b"\x00raw",
        value_bytes=b"...",
        headers=[("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        key={"id": "run-1"},
        value={"op": "u", "after": {"kind": "hplc"}},
    )
    for name, value in overrides.items():
        setattr(record, name, value)
    return record


def test_record_criteria() -> None:
    record = make_record()
    assert record.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert matches_raw(record, Selection(from_ms=1_000, to_ms=1_000, trace_id=record.trace_id))
    assert not matches_raw(record, Selection(from_ms=1_001))
    assert not matches_raw(record, Selection(trace_id="f" * 32))
    assert matches(record, Selection(keys=("run-1",)))
    assert matches(record, Selection(keys=("id=run-1",)))
    assert not matches(record, Selection(keys=("run-2",)))
    assert matches(record, Selection(ops=("u",), filter_text='after.kind == "hplc"'))
    assert not matches(record, Selection(ops=("c",)))
    assert not matches(record, Selection(filter_text='after.kind == "lc-ms"'))


def test_undecodable_records_are_kept_for_counting() -> None:
    record = make_record(key=None, value=None, decode_error="SerializationError: bad")
    assert matches(record, Selection(ops=("c",), filter_text="op == 'c'"))
    assert "undecodable" in record.summary()
    raw_key = make_record(key=None, key_bytes=b"run-9")
    assert raw_key.key_matches("run-9")


def test_records_of_earlier_replays_are_left_out_unless_asked() -> None:
    replayed = make_record(headers=[("labstream-replay-id", b"rp-1")])
    assert not matches_raw(replayed, Selection())
    assert matches_raw(replayed, Selection(include_replays=True))
    assert matches_raw(make_record(), Selection())
    assert Selection.from_json(Selection(include_replays=True).to_json()).include_replays
