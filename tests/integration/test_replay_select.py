"""ls/show against real Kafka: by time window, key, trace id, filter, offsets; bad input."""

from __future__ import annotations

import json
import time

import pytest
from replay_helpers import RunSpec, delete_topics, labstream, produce_runs

from replay.exceptions import EmptySelection, SelectionError
from replay.runner import Session, start_scan
from replay.selection import build_selection

pytestmark = pytest.mark.integration

BASE_MS = (int(time.time()) - 3600) * 1000  # an hour ago: inside retention, outside "now"


@pytest.fixture
def runs_topic(kafka_bootstrap: str, database_url: str, unique_name: str):  # type: ignore[no-untyped-def]
    specs = [
        RunSpec(
            f"run-{i}",
            "hplc" if i % 2 == 0 else "lc-ms",
            "completed" if i % 3 else "failed",
            op="c" if i < 2 else "u",
            partition=i % 2,
            timestamp_ms=BASE_MS + i * 60_000,
        )
        for i in range(10)
    ]
    topic, produced = produce_runs(
        kafka_bootstrap, database_url, unique_name, specs, garbage_at=(7,)
    )
    yield topic, produced
    delete_topics(kafka_bootstrap, topic)


def select(**values):  # type: ignore[no-untyped-def]
    with Session() as session:
        scan = start_scan(session, build_selection(**values))
        records = list(scan.records())
        return records, scan.stats


def ids(records) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(r.key_text() for r in records)


def test_whole_topic_decodes_and_counts_the_undecodable(runs_topic) -> None:  # type: ignore[no-untyped-def]
    topic, produced = runs_topic
    records, stats = select(topics=[topic])
    assert stats.scanned == stats.matched == 10
    assert stats.undecodable == 1
    (bad,) = [r for r in records if r.decode_error]
    assert (bad.partition, bad.offset) == (produced[7].partition, produced[7].offset)
    good = [r for r in records if not r.decode_error]
    assert all(r.value["source"]["table"] == "runs" for r in good)
    per_partition = {}
    for r in records:
        per_partition.setdefault(r.partition, []).append(r.offset)
    assert all(offsets == sorted(offsets) for offsets in per_partition.values())


def test_time_window(runs_topic) -> None:  # type: ignore[no-untyped-def]
    topic, _ = runs_topic
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((BASE_MS + 3 * 60_000) / 1000))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((BASE_MS + 5 * 60_000) / 1000))
    records, _ = select(topics=[topic], from_text=start, to_text=end)
    assert ids(records) == ["run-3", "run-4", "run-5"]


def test_by_key_trace_op_and_filter(runs_topic) -> None:  # type: ignore[no-untyped-def]
    topic, produced = runs_topic
    assert ids(select(topics=[topic], keys=["run-4", "run-6"])[0]) == ["run-4", "run-6"]
    by_trace, _ = select(topics=[topic], trace_id=produced[5].trace_id)
    assert ids(by_trace) == ["run-5"]
    creates, _ = select(topics=[topic], ops=["c"])
    assert ids([r for r in creates if not r.decode_error]) == ["run-0", "run-1"]
    hplc_done, _ = select(
        topics=[topic], filter_text='after.kind == "hplc" and after.status == "completed"'
    )
    decoded = [r for r in hplc_done if not r.decode_error]
    assert ids(decoded) == ["run-2", "run-4", "run-8"]


def test_explicit_offsets(runs_topic) -> None:  # type: ignore[no-untyped-def]
    topic, _ = runs_topic
    # partition 0 holds run-0, 2, 4, 6, 8 at offsets 0..4
    records, _ = select(offsets=[f"{topic}:0:1-3"])
    assert [r.offset for r in records] == [1, 2, 3]
    assert ids(records) == ["run-2", "run-4", "run-6"]


def test_empty_window_names_window_and_topic_bounds(runs_topic) -> None:  # type: ignore[no-untyped-def]
    topic, _ = runs_topic
    with pytest.raises(EmptySelection) as info:
        select(topics=[topic], from_text="-5m")
    assert topic in info.value.message and "holds" in info.value.message


def test_unknown_topic_suggests_the_real_one(runs_topic) -> None:  # type: ignore[no-untyped-def]
    topic, _ = runs_topic
    with pytest.raises(SelectionError) as info:
        select(topics=[topic[:-1]])
    assert topic in (info.value.hint or "")


def test_cli_ls_json_and_errors(runs_topic) -> None:  # type: ignore[no-untyped-def]
    topic, produced = runs_topic
    result = labstream("replay", "ls", "--topic", topic, "--key", "run-3", "--json")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["key"] == {"id": "run-3"}
    assert record["op"] == "u"
    assert record["trace_id"] == produced[3].trace_id
    assert (record["partition"], record["offset"]) == (produced[3].partition, produced[3].offset)
    assert "matched 1" in result.stderr

    table = labstream("replay", "ls", "--topic", topic)
    assert table.returncode == 0, table.stderr
    assert "undecodable 1" in table.stdout and "run-9" in table.stdout

    bad_filter = labstream("replay", "ls", "--topic", topic, "--filter", "after.kind = 'x'")
    assert bad_filter.returncode != 0
    assert "position" in bad_filter.stderr and "Traceback" not in bad_filter.stderr

    empty = labstream("replay", "ls", "--topic", topic, "--from", "-1m")
    assert empty.returncode != 0 and "holds" in empty.stderr and "Traceback" not in empty.stderr

    show = labstream("replay", "show", f"{topic}/{produced[3].partition}/{produced[3].offset}")
    assert show.returncode == 0, show.stderr
    assert "traceparent" in show.stdout and '"status": "failed"' in show.stdout


def test_one_session_scans_the_same_partitions_twice(runs_topic) -> None:  # type: ignore[no-untyped-def]
    """Regression: a finished scan paused its partitions and a second scan read nothing."""
    topic, _ = runs_topic
    with Session() as session:
        counts = []
        for _ in range(2):
            scan = start_scan(session, build_selection(topics=[topic]))
            counts.append(sum(1 for _ in scan.records()))
    assert counts == [10, 10]
