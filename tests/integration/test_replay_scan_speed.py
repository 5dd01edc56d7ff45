"""The scan's speed work against real Kafka: no second waited out at a scan's end, and
the C Avro reader gives the records and dry-run lines the Python reader gives."""

from __future__ import annotations

import time
from typing import Any

import pytest
from replay_helpers import RunSpec, delete_topics, produce_runs

from replay import fastscan
from replay.dryrun import dry_run
from replay.runner import Session, start_scan
from replay.selection import build_selection

pytestmark = pytest.mark.integration

BASE_MS = (int(time.time()) - 3600) * 1000


@pytest.fixture
def odd_topic(kafka_bootstrap: str, database_url: str, unique_name: str):  # type: ignore[no-untyped-def]
    # 13 records over 3 partitions: no batch size divides them
    specs = [RunSpec(f"run-{i}", "hplc" if i % 2 else "lc-ms",
                     "completed" if i % 3 else "failed", partition=i % 3,
                     timestamp_ms=BASE_MS + i) for i in range(13)]
    topic, _ = produce_runs(kafka_bootstrap, database_url, unique_name, specs, partitions=3,
                            garbage_at=(4,))
    yield topic
    delete_topics(kafka_bootstrap, topic)


class _Spy:
    """The real librdkafka consumer, with what each consume() asked for written down."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.asked: list[int] = []

    def consume(self, num_messages: int, timeout: float) -> Any:
        self.asked.append(num_messages)
        return self.consumer.consume(num_messages, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


def test_a_scan_asks_for_no_more_than_its_plan_holds(
        odd_topic: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spies: list[_Spy] = []
    real_open = fastscan.open_reader

    def spying_open(bootstrap: Any, overrides: Any = None) -> _Spy:
        spies.append(_Spy(real_open(bootstrap, overrides)))
        return spies[-1]

    monkeypatch.setattr(fastscan, "open_reader", spying_open)
    with Session() as session:
        for limit in (None, 1, 5):
            scan = start_scan(session, build_selection(topics=[odd_topic], limit=limit))
            started = time.perf_counter()
            records = list(scan.records())
            elapsed = time.perf_counter() - started
            assert len(records) == (13 if limit is None else limit)
            # before: consume(5000, timeout=1.0) waited out its second for the last batch
            assert elapsed < 1.0, (limit, elapsed, spies[-1].asked)
            assert spies[-1].asked[0] == 13 and all(n <= 13 for n in spies[-1].asked)


def test_the_c_reader_and_the_python_reader_scan_and_dry_run_alike(
        odd_topic: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> tuple[list[Any], list[str]]:
        with Session() as session:
            selection = build_selection(topics=[odd_topic])
            records = [(r.coordinates, r.key, r.value, r.decode_error)
                       for r in start_scan(session, selection).records()]
            report = dry_run(session, selection, reference_source="db")
            return records, report.lines()

    compiled = run()
    monkeypatch.setenv("LABSTREAM_CDC_SPEEDUPS", "0")
    python = run()
    assert compiled == python
    assert len(compiled[0]) == 13 and sum(1 for r in compiled[0] if r[3]) == 1


def test_librdkafka_plans_exactly_as_kafka_python(odd_topic: str, kafka_bootstrap: str) -> None:
    from dataclasses import replace

    from replay.exceptions import EmptySelection, SelectionError
    from replay.offsets import LibrdkafkaOffsets
    from replay.selection import Selection, plan

    with Session() as session:
        fast = session.offsets
        assert isinstance(fast, LibrdkafkaOffsets)
        assert fast.topics() == session.consumer.topics()
        assert odd_topic in fast.topics() and "__consumer_offsets" not in fast.topics()
        assert fast.partitions_for_topic(odd_topic) == {0, 1, 2}
        assert fast.partitions_for_topic("no.such.topic") is None
        whole = build_selection(topics=[odd_topic])
        selections = [
            whole,
            replace(whole, from_ms=BASE_MS + 4, to_ms=BASE_MS + 9),
            replace(whole, from_ms=BASE_MS + 12),
            build_selection(offsets=[f"{odd_topic}:1:1-2", f"{odd_topic}:2:3-"]),
        ]
        for selection in selections:
            made = plan(selection, fast)
            assert made == plan(selection, session.consumer), selection
            assert made, selection
        for selection in (replace(whole, from_ms=BASE_MS + 10_000),
                          Selection(topics=(odd_topic.replace("runs", "runz"),)),
                          build_selection(offsets=[f"{odd_topic}:7:0-"])):
            errors = []
            for consumer in (fast, session.consumer):
                with pytest.raises((EmptySelection, SelectionError)) as caught:
                    plan(selection, consumer)
                errors.append(caught.value.message)
            assert errors[0] == errors[1], selection


def test_a_real_scan_spaces_young_collections_and_puts_them_back(odd_topic: str) -> None:
    import gc
    from collections.abc import Generator

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        with Session() as session:
            records = start_scan(session, build_selection(topics=[odd_topic])).records()
            assert isinstance(records, Generator)
            next(records)
            assert gc.get_threshold() == (fastscan.SCAN_GC_THRESHOLD, 10, 10)
            records.close()  # left unfinished: a break out of the loop, a Ctrl-C
            assert gc.get_threshold() == (700, 10, 10)
            assert len(list(start_scan(session, build_selection(topics=[odd_topic]))
                            .records())) == 13
            assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
