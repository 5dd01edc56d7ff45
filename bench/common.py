"""Measuring helpers shared by the benchmarks (method: /work/shared/BENCHMARKING.md).

- topics are created with `message.timestamp.type=LogAppendTime`, so the broker stamps
  each record's arrival and the system under test cannot move the clock;
- records are read back only after a phase (librdkafka consumer, CRC checks off), so
  the reader does not compete with the system under test for the two cores;
- CPU seconds and peak RSS (VmHWM) come from /proc/<pid> of the process under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- database --------------------------------------------------------------------------------


def sql(database_url: str, statement: str, params: Any = None) -> list[Any]:
    """Run one statement in its own autocommit connection; rows if it returns any."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def drop_slot_and_publication(database_url: str, slot: str, publication: str) -> None:
    """Drop the run's replication slot(s) and publication: an abandoned slot retains WAL."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        active = sql(
            database_url,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE %s AND active",
            (slot + "%",),
        )[0][0]
        if not active:
            break
        time.sleep(0.5)
    sql(
        database_url,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name LIKE %s AND NOT active",
        (slot + "%",),
    )
    sql(database_url, f'DROP PUBLICATION IF EXISTS "{publication}"')


# -- Kafka -----------------------------------------------------------------------------------


def create_log_append_topics(bootstrap: str, topics: Iterable[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [
        NewTopic(
            t,
            num_partitions=1,
            replication_factor=1,
            config={"message.timestamp.type": "LogAppendTime"},
        )
        for t in topics
    ]
    for future in admin.create_topics(new).values():
        future.result()


def delete_topics(bootstrap: str, topics: Iterable[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(list(topics)).values():
        with contextlib.suppress(Exception):  # an already-missing topic is fine at cleanup
            future.result()


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "labstream-bench-probe"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high or 0)
    finally:
        consumer.close()


def wait_for_offset(
    bootstrap: str,
    topic: str,
    target: int,
    timeout_s: float = 900,
    alive: Callable[[], bool] = lambda: True,
) -> float:
    """Block until `topic` holds `target` records; monotonic time it was seen."""
    deadline = time.monotonic() + timeout_s
    while (seen := end_offset(bootstrap, topic)) < target:
        if not alive():
            raise RuntimeError(f"process under test died with {seen} of {target} records")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen} of {target} records arrived in {timeout_s:.0f} s")
        time.sleep(0.25)
    return time.monotonic()


def read_back(
    bootstrap: str, topic: str, start: int, end: int, commit_ms_of: Callable[[bytes], int]
) -> list[tuple[int, int]]:
    """(broker LogAppendTime ms, commit time ms) of the records at offsets [start, end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "labstream-bench-reader",
            "enable.auto.commit": False,
            "check.crcs": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, start)])
    stamps: list[tuple[int, int]] = []
    next_offset = start
    deadline = time.monotonic() + 300
    try:
        while next_offset < end and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 1.0):
                offset = message.offset()
                if message.error() or offset is None or offset >= end:
                    continue
                next_offset = offset + 1
                value = message.value()
                if value is None:  # tombstone: no commit time to measure
                    continue
                kind, broker_ms = message.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    raise RuntimeError(f"{topic} is not LogAppendTime: the broker must stamp")
                stamps.append((broker_ms, commit_ms_of(value)))
    finally:
        consumer.close()
    if next_offset < end:
        raise RuntimeError(f"read back stopped at offset {next_offset} of {end} in {topic}")
    return stamps


# -- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessProbe:
    """CPU seconds and memory of one process under test, from /proc/<pid>."""

    pid: int

    def cpu_seconds(self) -> float:
        # fields after the ")" of comm: utime is the 12th, stime the 13th (0-based 11, 12)
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def _status_mb(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM")

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS")


# -- statistics ------------------------------------------------------------------------------


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def latency_summary(stamps: list[tuple[int, int]]) -> dict[str, float]:
    """p50/p95/p99/max of broker time - commit time, in ms."""
    latencies = sorted(broker - commit for broker, commit in stamps)
    return {
        "records": len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": float(latencies[-1]) if latencies else float("nan"),
    }


def bulk_rate(stamps: list[tuple[int, int]]) -> dict[str, float]:
    """rows / (first commit -> broker timestamp of the last record)."""
    first_commit = min(commit for _, commit in stamps)
    last_arrival = max(broker for broker, _ in stamps)
    seconds = max(last_arrival - first_commit, 1) / 1000
    # first -> last commit: how fast PostgreSQL produced the rows (an upper bound on the
    # rate any connector can show; near it, the bench measures the writer, not the reader)
    commit_span = max(commit for _, commit in stamps) - first_commit
    return {
        "rows": len(stamps),
        "seconds": round(seconds, 3),
        "rows_per_s": round(len(stamps) / seconds),
        "commit_span_s": round(commit_span / 1000, 3),
    }


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def median(values: Iterable[float]) -> float:
    present = [v for v in values if v == v]  # drop NaN
    return statistics.median(present) if present else float("nan")


# -- the machine -----------------------------------------------------------------------------


def _first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "?"
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def code_fingerprint(*packages: str) -> dict[str, str]:
    """sha1 of the packages' .py files and the newest change: other helpers edit the code
    under test while benches run, so every run says which code it measured."""
    files = sorted(f for package in packages for f in (REPO / package).rglob("*.py"))
    digest = hashlib.sha1()
    for path in files:
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    newest = max((f.stat().st_mtime for f in files), default=0.0)
    return {
        "sha1": digest.hexdigest()[:12],
        "newest_change": datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds"),
    }


def machine_info(database_url: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    kafka_jars = sorted((REPO / ".state" / "kafka" / "libs").glob("kafka_2.13-*.jar"))
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1) if model else "?",
        "kernel": platform.release(),
        "loadavg_at_start": loadavg(),
        "python": platform.python_version(),
        "java": _first_line(["java", "-version"]),
        "postgresql": sql(database_url, "SHOW server_version")[0][0],
        "synchronous_commit": sql(database_url, "SHOW synchronous_commit")[0][0],
        "kafka_broker": kafka_jars[-1].stem.removeprefix("kafka_2.13-") if kafka_jars else "?",
    }
