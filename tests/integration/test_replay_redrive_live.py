"""--execute against real Kafka: order, headers, new traces linked to the originals,
production-topic guard, and kill -9 midway + resume with no gap and no duplicate."""

from __future__ import annotations

import json
import signal
import time

import psycopg
import pytest
from replay_helpers import (
    RunSpec,
    delete_topics,
    header,
    labstream,
    produce_runs,
    read_all,
    start_labstream,
)

from tracing.spanstore import fetch_linking_spans

pytestmark = pytest.mark.integration

BASE_MS = (int(time.time()) - 1800) * 1000


def replay_row(database_url: str, target: str) -> dict | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT id, status, produced, matched, undecodable, progress FROM labstream.replays "
            "WHERE target = %s ORDER BY created_at DESC LIMIT 1",
            (target,),
        ).fetchone()
    if row is None:
        return None
    return dict(
        zip(("id", "status", "produced", "matched", "undecodable", "progress"), row, strict=True)
    )


def test_execute_to_target_topic(kafka_bootstrap: str, database_url: str, unique_name: str) -> None:
    specs = [
        RunSpec(
            f"run-{i % 3}", "hplc", "completed", partition=i % 2, timestamp_ms=BASE_MS + i * 1000
        )
        for i in range(8)
    ]
    topic, produced = produce_runs(
        kafka_bootstrap, database_url, unique_name, specs, garbage_at=(5,)
    )
    target = f"replay.{unique_name}"
    try:
        result = labstream(
            "replay", "run", "--topic", topic, "--op", "u", "--execute", "--target-topic", target
        )
        assert result.returncode == 0, result.stderr
        assert "matched 8, undecodable 1, produced 7" in result.stdout
        assert "undecodable (not produced)" in result.stderr

        replayed = read_all(kafka_bootstrap, target, 2)
        expected = [p for i, p in enumerate(produced) if i != 5]
        assert sorted(header(m, "labstream-replay-of") for m in replayed) == sorted(
            f"{topic}/{p.partition}/{p.offset}" for p in expected
        )
        row = replay_row(database_url, target)
        assert row is not None and row["status"] == "succeeded"
        finished = labstream("replay", "resume", row["id"])
        assert finished.returncode != 0 and "already finished" in finished.stderr
        unknown = labstream("replay", "resume", "rp-does-not-exist")
        assert unknown.returncode != 0 and "replay history" in unknown.stderr
        misuse = labstream("replay", "run", "--topic", topic, "--rate", "5")
        assert misuse.returncode != 0 and "--execute" in misuse.stderr
        for result_ in (finished, unknown, misuse):
            assert "Traceback" not in result_.stderr
        by_original = {header(m, "labstream-replay-of"): m for m in replayed}
        for original in expected:
            message = by_original[f"{topic}/{original.partition}/{original.offset}"]
            assert message.partition() == original.partition  # same partition: per-key order kept
            assert header(message, "labstream-replay-id") == row["id"]
            assert header(message, "lab-origin") == "replay-test"
            names = [name for name, _ in message.headers()]
            assert names.count("traceparent") == 1
            assert header(message, "labstream-replay-rerun-succeeded") is None
            new_trace = header(message, "traceparent").split("-")[1]
            assert new_trace != original.trace_id
        # per partition, the replayed order is the original order
        for partition in (0, 1):
            offsets = [
                int(header(m, "labstream-replay-of").rsplit("/", 1)[1])
                for m in replayed
                if m.partition() == partition
            ]
            assert offsets == sorted(offsets)
        # each replayed record's new trace links to its original trace (span store)
        with psycopg.connect(database_url) as conn:
            for original in expected[:3]:
                linking = fetch_linking_spans(conn, original.trace_id)
                assert [s.name for s in linking] == [f"replay {target}"]
                new_trace = header(
                    by_original[f"{topic}/{original.partition}/{original.offset}"], "traceparent"
                ).split("-")[1]
                assert linking[0].trace_id == new_trace
    finally:
        delete_topics(kafka_bootstrap, topic, target)


def test_production_topic_needs_consent(
    kafka_bootstrap: str, database_url: str, unique_name: str
) -> None:
    topic, _ = produce_runs(
        kafka_bootstrap,
        database_url,
        unique_name,
        [RunSpec("run-1", "hplc", "completed", timestamp_ms=BASE_MS)],
    )
    target = f"lab.{unique_name}.public.runs"
    try:
        result = labstream("replay", "run", "--topic", topic, "--execute", "--target-topic", target)
        assert result.returncode != 0
        assert "production" in result.stderr and "--yes" in result.stderr
        assert "Traceback" not in result.stderr
        assert replay_row(database_url, target) is None  # nothing recorded, nothing produced
    finally:
        delete_topics(kafka_bootstrap, topic, target)


def test_kill_midway_then_resume_neither_skips_nor_duplicates(
    kafka_bootstrap: str, database_url: str, unique_name: str
) -> None:
    count = 80
    specs = [
        RunSpec(
            f"run-{i % 7}", "hplc", "completed", partition=i % 2, timestamp_ms=BASE_MS + i * 100
        )
        for i in range(count)
    ]
    topic, produced = produce_runs(kafka_bootstrap, database_url, unique_name, specs)
    target = f"replay.{unique_name}"
    process = start_labstream(
        "replay",
        "run",
        "--topic",
        topic,
        "--execute",
        "--target-topic",
        target,
        "--rate",
        "20",
        env={"LABSTREAM_REPLAY_BATCH_SECONDS": "2"},
    )
    try:
        deadline = time.monotonic() + 60
        row = None
        while time.monotonic() < deadline:  # wait for a first recorded checkpoint...
            row = replay_row(database_url, target)
            if row and row["produced"] > 0:
                break
            time.sleep(0.1)
        assert row and row["produced"] > 0, process.stderr and process.stderr.read()
        time.sleep(0.8)  # ...then kill in the middle of the next batch
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        at_kill = replay_row(database_url, target)
        assert at_kill is not None and at_kill["status"] == "running"
        assert 0 < at_kill["produced"] < count
        before_resume = read_all(kafka_bootstrap, target, 2)
        assert len(before_resume) < count  # really killed midway...
        # ...with records acknowledged by Kafka but not yet recorded: resume must find them
        assert len(before_resume) > at_kill["produced"]

        result = labstream("replay", "resume", at_kill["id"], "--rate", "200")
        assert result.returncode == 0, result.stderr
        assert f"produced {count}" in result.stdout

        replayed = read_all(kafka_bootstrap, target, 2)
        coordinates = [header(m, "labstream-replay-of") for m in replayed]
        assert len(coordinates) == len(set(coordinates)) == count  # no duplicate, no gap
        assert set(coordinates) == {f"{topic}/{p.partition}/{p.offset}" for p in produced}
        for partition in (0, 1):
            offsets = [
                int(c.rsplit("/", 1)[1])
                for m, c in zip(replayed, coordinates, strict=True)
                if m.partition() == partition
            ]
            assert offsets == sorted(offsets)
        final = replay_row(database_url, target)
        assert final is not None and final["status"] == "succeeded" and final["produced"] == count
        history = labstream("replay", "history", "--json", "--limit", "50")
        assert any(json.loads(line)["id"] == at_kill["id"] for line in history.stdout.splitlines())
    finally:
        if process.poll() is None:
            process.kill()
        delete_topics(kafka_bootstrap, topic, target)


def test_redrive_after_a_full_scan_in_the_same_session_reads_every_partition(
    kafka_bootstrap: str, database_url: str, unique_name: str
) -> None:
    """Regression: kafka-python starved a partition that the same consumer had read to
    its end before; the re-drive then produced 3 of 4 partitions (bench/replay_scan.py)."""
    from replay import runner
    from replay.redrive import RedriveOptions
    from replay.selection import build_selection

    count = 20_000
    specs = [
        RunSpec(f"run-{i}", "hplc", "completed", partition=i % 4, timestamp_ms=BASE_MS + i)
        for i in range(count)
    ]
    topic, _ = produce_runs(kafka_bootstrap, database_url, unique_name, specs, partitions=4)
    target = f"replay.{unique_name}"
    try:
        with runner.Session() as session:
            scan = runner.start_scan(session, build_selection(topics=[topic]))
            assert sum(1 for _ in scan.records()) == count
            row, _ = runner.execute(
                session,
                build_selection(topics=[topic]),
                RedriveOptions(target_topic=target, batch_size=2000),
            )
        assert row.produced == count
        assert sorted(row.progress.values()) == [count // 4 - 1] * 4
    finally:
        delete_topics(kafka_bootstrap, topic, target)


def test_ctrl_c_records_what_was_acknowledged_then_resume_completes(
    kafka_bootstrap: str, database_url: str, unique_name: str
) -> None:
    # 5 s at --rate 20: Ctrl-C lands mid-run even when a loaded machine records the
    # first checkpoint late (40 records finished before it once under a full suite)
    count = 100
    specs = [
        RunSpec(
            f"run-{i % 5}", "hplc", "completed", partition=i % 2, timestamp_ms=BASE_MS + i * 100
        )
        for i in range(count)
    ]
    topic, produced = produce_runs(kafka_bootstrap, database_url, unique_name, specs)
    target = f"replay.{unique_name}"
    process = start_labstream(
        "replay", "run", "--topic", topic, "--execute", "--target-topic", target, "--rate", "20"
    )
    try:
        wait_until = time.monotonic() + 60
        while time.monotonic() < wait_until:
            row = replay_row(database_url, target)
            if row and row["produced"] > 0:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr
        stopped = replay_row(database_url, target)
        assert stopped is not None and stopped["status"] == "interrupted"
        assert 0 < stopped["produced"] < count
        # everything acknowledged before Ctrl-C was recorded: nothing to find again
        assert len(read_all(kafka_bootstrap, target, 2)) == stopped["produced"]

        result = labstream("replay", "resume", stopped["id"], "--rate", "500")
        assert result.returncode == 0, result.stderr
        coordinates = [
            header(m, "labstream-replay-of") for m in read_all(kafka_bootstrap, target, 2)
        ]
        assert sorted(coordinates) == sorted(f"{topic}/{p.partition}/{p.offset}" for p in produced)
    finally:
        if process.poll() is None:
            process.kill()
        delete_topics(kafka_bootstrap, topic, target)
