"""Kill the connector (SIGKILL) at random moments under a steady write load, including
during the initial snapshot of a pre-filled table and right after it: every committed
row version must still reach Kafka, in commit order per key (duplicates allowed)."""

from __future__ import annotations

import random
import signal
import threading
import time

import psycopg
import pytest
from cdc_helpers import (
    Decoder,
    cdc_settings,
    cleanup,
    execute,
    offsets_row,
    read_topic,
    start_subprocess,
    stop_subprocess,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFILLED_ROWS = 30_000
KEYS = 6
KILLS = 12


class Writer(threading.Thread):
    """Single-row transactions on a few keys; records every committed version."""

    def __init__(self, database_url: str, table: str) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.table = table
        self.committed: list[tuple[int, int]] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                for key in range(KEYS):
                    conn.execute(f"INSERT INTO {self.table} (id, ver) VALUES (%s, 1)", (key,))
                    self.committed.append((key, 1))
                rng = random.Random(7)
                while not self.halt.is_set():
                    key = rng.randrange(KEYS)
                    (ver,) = conn.execute(
                        f"UPDATE {self.table} SET ver = ver + 1 WHERE id = %s RETURNING ver",
                        (key,)).fetchone()
                    self.committed.append((key, ver))
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc


def test_no_committed_version_is_lost_across_kills(unique_name, database_url, kafka_bootstrap,
                                                   tmp_path):
    settings = cdc_settings(unique_name, heartbeat_interval_ms=500)
    prefilled, load = f"public.{unique_name}_pre", f"public.{unique_name}_load"
    execute(database_url,
            f"CREATE TABLE {prefilled} (id int PRIMARY KEY, payload text NOT NULL)",
            f"INSERT INTO {prefilled} SELECT g, md5(g::text) FROM generate_series(1, "
            f"{PREFILLED_ROWS}) g",
            f"CREATE TABLE {load} (id int PRIMARY KEY, ver int NOT NULL)")
    writer = Writer(database_url, load)
    log_path = tmp_path / "connector.log"
    rng = random.Random(unique_name)
    kill_moments = []
    proc = None
    try:
        # 1: killed during the initial snapshot
        proc = start_subprocess(settings, log_path)
        wait_for(lambda: (row := offsets_row(database_url, settings.connector_name))
                 and row["snapshot_state"] == "running", 30, "the snapshot to start")
        writer.start()  # every version from here on is after the slot's consistent point
        time.sleep(0.3)
        stop_subprocess(proc, signal.SIGKILL)
        kill_moments.append("during initial snapshot")
        # 2: killed during the hand-over (old slot streamed up to a new snapshot)
        proc = start_subprocess(settings, log_path)
        wait_for(lambda: (row := offsets_row(database_url, settings.connector_name))
                 and row["pending_slot"], 30, "the hand-over to start")
        time.sleep(rng.uniform(0.0, 0.8))
        stop_subprocess(proc, signal.SIGKILL)
        kill_moments.append("during hand-over")
        # 3: killed right after a snapshot completed, before streaming confirmed anything
        proc = start_subprocess(settings, log_path)
        wait_for(lambda: (row := offsets_row(database_url, settings.connector_name))
                 and row["snapshot_state"] == "done", 90, "the snapshot hand-over to finish")
        stop_subprocess(proc, signal.SIGKILL)
        kill_moments.append("right after snapshot")
        # 4..: random moments (start-up, hand-over, streaming)
        for _ in range(KILLS - 3):
            proc = start_subprocess(settings, log_path)
            delay = rng.uniform(0.2, 3.0)
            time.sleep(delay)
            stop_subprocess(proc, signal.SIGKILL)
            kill_moments.append(f"after {delay:.1f}s")
        writer.halt.set()
        writer.join(10)
        assert writer.error is None, writer.error
        # a last run that catches up and stops cleanly
        proc = start_subprocess(settings, log_path)
        expected = set(writer.committed)
        decode = Decoder(database_url)
        topic = f"{settings.topic_prefix}.{load}"

        deadline = time.monotonic() + 90
        while True:
            records = read_topic(kafka_bootstrap, topic, minimum=1, timeout=10)
            versions = _versions(records, decode)
            missing = expected - {(k, v) for k, vs in versions.items() for v in vs}
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert not missing, f"{len(missing)} committed versions never reached Kafka: " \
            f"{sorted(missing)[:20]} (kills: {kill_moments})"
        assert stop_subprocess(proc, signal.SIGTERM) == 0
    finally:
        writer.halt.set()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        cleanup(settings, database_url)

    assert len(kill_moments) >= 10
    for key in range(KEYS):
        seen = versions[key]
        first_seen = list(dict.fromkeys(seen))  # dedupe, keeping first occurrences
        assert first_seen == sorted(first_seen), f"key {key} out of commit order: {first_seen}"
        committed = [v for k, v in writer.committed if k == key]
        assert set(committed) <= set(seen), f"key {key} lost {set(committed) - set(seen)}"
    prefilled_keys = {decode(r.key())["id"] for r in read_topic(
        kafka_bootstrap, f"{settings.topic_prefix}.{prefilled}", minimum=PREFILLED_ROWS,
        timeout=60)}
    assert len(prefilled_keys) == PREFILLED_ROWS


def _versions(records, decode) -> dict[int, list[int]]:
    """key -> versions in Kafka order (snapshot reads included, tombstones skipped)."""
    out: dict[int, list[int]] = {k: [] for k in range(KEYS)}
    for record in records:
        if record.value() is None:
            continue
        after = decode(record.value())["after"]
        if after is not None:
            out[after["id"]].append(after["ver"])
    return out
