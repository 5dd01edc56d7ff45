"""Shared helpers of the test_cdc_* integration tests (not a test module)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.registry import DbSchemaRegistry
from connectors.serde import AvroDeserializer
from connectors.source import catalog
from connectors.source.config import CdcSettings
from connectors.source.connector import CdcConnector
from connectors.source.status import reset_connector

REPO = Path(__file__).resolve().parents[2]


def cdc_settings(name: str, **overrides: Any) -> CdcSettings:
    values: dict[str, Any] = dict(
        name=name, slot_name=name, publication=name, topic_prefix=name,
        table_include_list=rf"public\.{name}.*", heartbeat_interval_ms=1000,
        # one partition: these tests check the order of changes across rows (`read_topic`
        # reads partition 0); the default (4) keeps only each row's order
        topic_partitions=1,
    )
    values.update(overrides)
    return CdcSettings(**values)


def cdc_environment(settings: CdcSettings) -> dict[str, str]:
    env = dict(os.environ)
    for field in CdcSettings.model_fields:
        value = getattr(settings, field)
        env[f"LABSTREAM_CDC_{field.upper()}"] = str(value).lower() if isinstance(value, bool) \
            else str(value)
    return env


def execute(database_url: str, *statements: str, params: Any = None) -> list[Any]:
    """Run statements in one transaction; returns the last one's rows (if any)."""
    with psycopg.connect(database_url) as conn:
        rows: list[Any] = []
        for statement in statements:
            cur = conn.execute(statement, params)
            rows = cur.fetchall() if cur.description else []
        return rows


@contextlib.contextmanager
def running(settings: CdcSettings, database_url: str, bootstrap: str) -> Iterator[CdcConnector]:
    """The connector in a background thread; stopped (cleanly) on exit."""
    connector = CdcConnector(settings, database_url=database_url, bootstrap_servers=bootstrap)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            connector.run()
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield connector
    finally:
        connector.stop()
        thread.join(60)
    assert not thread.is_alive(), "connector did not stop within 60 s"
    if failure:
        raise failure[0]


def start_subprocess(settings: CdcSettings, log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - closed by the process exit
    return subprocess.Popen(
        [sys.executable, "-m", "labstream.cli", "cdc", "run"],
        env=cdc_environment(settings), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )


def stop_subprocess(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(60)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def all_partitions(consumer: Consumer, topic: str, start: int = 0) -> list[TopicPartition]:
    """Every partition of `topic` (as the cluster knows it now), from offset `start`."""
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    return [TopicPartition(topic, number, start) for number in sorted(metadata.partitions)]


def read_topic(bootstrap: str, topic: str, *, minimum: int = 0, timeout: float = 30.0,
               settle: float = 0.0) -> list[Any]:
    """Every record of partition 0 of `topic`, from the start to the end as it is now;
    waits up to `timeout` for at least `minimum`, then `settle` seconds of quiet."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"t-{topic}-{time.time_ns()}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "check.crcs": False,
    })
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
            except KafkaException:  # the connector has not created the topic yet
                high = 0
                time.sleep(0.2)
            batch = consumer.consume(5000, 0.2)
            records.extend(m for m in batch if m.error() is None)
            if batch:
                quiet_since = time.monotonic()
            caught_up = not records or records[-1].offset() >= high - 1
            if len(records) >= minimum and caught_up and (
                    settle <= 0 or time.monotonic() - quiet_since >= settle):
                break
        return records
    finally:
        consumer.close()


class Decoder:
    def __init__(self, database_url: str) -> None:
        self.avro = AvroDeserializer(DbSchemaRegistry(database_url))

    def __call__(self, data: bytes | None) -> Any:
        return self.avro.decode(data)

    def value_schema_id(self, data: bytes) -> int:
        return self.avro.schema_id(data)


def cleanup(settings: CdcSettings, database_url: str) -> None:
    """Drop what a test's connector made: slots, offsets row, publication, tables."""
    with psycopg.connect(database_url) as conn:
        with contextlib.suppress(Exception):
            wait_for(lambda: not any(
                (info := catalog.slot_info(conn, name)) and info.active
                for name in _slots(conn, settings.slot_name)), 20, "slots to become inactive")
        reset_connector(conn, settings)
        conn.execute(f'DROP PUBLICATION IF EXISTS "{settings.publication}"')
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
            (settings.slot_name + "%",)).fetchall()
        for (table,) in tables:
            conn.execute(f'DROP TABLE IF EXISTS public."{table}" CASCADE')
        conn.commit()


def _slots(conn: psycopg.Connection, base: str) -> list[str]:
    rows = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s",
                        (base + "%",)).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def slot_row(database_url: str, slot: str) -> tuple[Any, ...] | None:
    rows = execute(database_url,
                   "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots "
                   "WHERE slot_name = %s", params=(slot,))
    return rows[0] if rows else None


def offsets_row(database_url: str, name: str) -> dict[str, Any] | None:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute("SELECT * FROM labstream.connector_offsets WHERE connector_name = %s",
                           (name,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c.name for c in cur.description or []], row, strict=True))
