"""The replay CLI as a person uses it: several --offsets of one partition, the re-drive
question in a real terminal (tmux), and replayed copies left out with a pointer to the
original."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from replay_helpers import REPO, RunSpec, delete_topics, labstream, produce_runs

from replay.runner import Session, start_scan
from replay.selection import build_selection

pytestmark = pytest.mark.integration


@pytest.fixture
def six_runs(kafka_bootstrap: str, database_url: str, unique_name: str):  # type: ignore[no-untyped-def]
    """`lab.<name>.public.runs` (a production topic by name), offsets 0..5 on partition 0."""
    specs = [RunSpec(f"run-{i}", "hplc", "completed", partition=0) for i in range(6)]
    topic, produced = produce_runs(
        kafka_bootstrap, database_url, f"lab.{unique_name}", specs, partitions=1
    )
    yield topic, produced
    delete_topics(kafka_bootstrap, topic)


def test_several_offsets_of_one_partition_are_all_kept(six_runs) -> None:  # type: ignore[no-untyped-def]
    """Regression: only the last --offsets of a partition was kept (dict by partition)."""
    topic, _ = six_runs
    selection = build_selection(offsets=[f"{topic}:0:0", f"{topic}:0:3-4"])
    with Session() as session:
        records = list(start_scan(session, selection).records())
    assert [r.offset for r in records] == [0, 3, 4]

    result = labstream(
        "replay", "ls", "--offsets", f"{topic}:0:1", "--offsets", f"{topic}:0:5", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 and "matched 2" in result.stderr


def _end_offset(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"h-{uuid.uuid4().hex}"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def _screen(socket: str) -> str:
    """What the terminal shows now (tmux renders the escape codes, as a person sees it)."""
    shown = subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-t", "replay"],
                           capture_output=True, text=True, check=True)
    return shown.stdout


def _wait_for_screen(socket: str, wanted: str, deadline_s: float) -> str:
    deadline = time.monotonic() + deadline_s
    shown = _screen(socket)
    while wanted not in shown and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the screen for a condition, with a deadline
        shown = _screen(socket)
    return shown


def test_the_redrive_question_shows_in_a_terminal_and_no_means_nothing_is_sent(
    six_runs, kafka_bootstrap: str
) -> None:  # type: ignore[no-untyped-def]
    """Regression: the live progress bar held the yes/no question back (stderr buffered
    until a newline) and redrew over it: the terminal stayed blank, the command looked hung.

    Run in tmux, the question is checked on the rendered screen, not in the raw bytes.
    """
    assert shutil.which("tmux"), "tmux is needed for this test: apt-get install -y tmux"
    topic, _ = six_runs
    before = _end_offset(kafka_bootstrap, topic)
    socket = f"labstream-test-{uuid.uuid4().hex[:12]}"
    command = (f"{REPO / '.venv' / 'bin' / 'labstream'} replay run --offsets {topic}:0:2 "
               "--execute; echo exit=$?; sleep 120")
    subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "replay", "-x", "200",
                    "-y", "40", command], check=True, env=dict(os.environ))
    try:
        shown = _wait_for_screen(socket, "[y/N]", 60)
        assert f"Replay 1 record(s) into production topic(s) {topic}?" in shown, shown
        subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "replay", "n", "Enter"],
                       check=True)
        after = _wait_for_screen(socket, "exit=", 60)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], check=False)
    assert "not replaying into production topics" in after, after
    assert "exit=0" not in after and "Traceback" not in after
    assert _end_offset(kafka_bootstrap, topic) == before  # "no" sent nothing


def test_a_replayed_copy_is_left_out_and_the_original_is_named(
    six_runs, kafka_bootstrap: str
) -> None:  # type: ignore[no-untyped-def]
    """After a re-drive the copy's offsets select nothing: the CLI says why and where to go."""
    topic, produced = six_runs
    original = produced[1]
    source = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"h-{uuid.uuid4().hex}",
                       "enable.auto.commit": False})
    try:
        source.assign([TopicPartition(topic, 0, original.offset)])
        message = None
        deadline = time.monotonic() + 30
        while message is None and time.monotonic() < deadline:
            message = source.poll(1.0)
    finally:
        source.close()
    assert message is not None and message.error() is None
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    copy_offset: list[int] = []
    producer.produce(
        topic, key=message.key(), value=message.value(), partition=0,
        headers=[("labstream-replay-id", b"rp-test"),
                 ("labstream-replay-of", f"{topic}/0/{original.offset}".encode())],
        on_delivery=lambda err, msg: copy_offset.append(msg.offset()),
    )
    assert producer.flush(30) == 0 and copy_offset

    result = labstream(
        "replay", "run", "--offsets", f"{topic}:0:{copy_offset[0]}", "--reference", "db"
    )
    assert result.returncode == 0, result.stderr
    assert "dry run: matched 0" in result.stdout
    assert "left out 1 record(s) produced by earlier replays" in result.stderr
    assert f"--offsets {topic}:0:{original.offset}" in result.stderr
