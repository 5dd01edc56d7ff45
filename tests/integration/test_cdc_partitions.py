"""CDC topics have several partitions by default; one row's changes stay in order on one."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from cdc_helpers import (
    Decoder,
    all_partitions,
    cdc_settings,
    cleanup,
    execute,
    offsets_row,
    running,
    wait_for,
)
from confluent_kafka import Consumer

from connectors.source.config import CdcSettings

pytestmark = pytest.mark.integration
ROWS, UPDATES = 24, 5


def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while not consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            assert time.monotonic() < deadline, f"{topic} was not created"
            time.sleep(0.2)
        consumer.assign(all_partitions(consumer, topic))
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(m for m in consumer.consume(1000, 0.5) if m.error() is None)
    finally:
        consumer.close()
    assert len(records) == expected, f"{len(records)} of {expected} records in {topic}"
    return records


def test_default_partitions_keep_each_rows_changes_in_order(unique_name, database_url,
                                                            kafka_bootstrap) -> None:
    default = CdcSettings.model_fields["topic_partitions"].default
    assert default >= 2  # several workers can share a CDC topic
    table = f"public.{unique_name}"
    execute(database_url, f"CREATE TABLE {table} (id int PRIMARY KEY, version int)",
            f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, {ROWS}) g")
    settings = cdc_settings(unique_name, topic_partitions=default)
    decode = Decoder(database_url)
    try:
        with running(settings, database_url, kafka_bootstrap):
            wait_for(lambda: (row := offsets_row(database_url, unique_name))
                     and row["snapshot_state"] == "done", 30, "the snapshot")
            for version in range(1, UPDATES + 1):  # one transaction per round, all rows
                execute(database_url, f"UPDATE {table} SET version = {version}")
            records = _read_all(kafka_bootstrap, f"{unique_name}.{table}",
                                ROWS * (UPDATES + 1))
        partitions_of: dict[int, set[int]] = defaultdict(set)
        versions_of: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for record in records:
            after = decode(record.value())["after"]
            partitions_of[after["id"]].add(record.partition())
            versions_of[after["id"]].append((record.offset(), after["version"]))
        assert all(len(partitions) == 1 for partitions in partitions_of.values())
        assert len({p for ps in partitions_of.values() for p in ps}) > 1  # spread out
        for row_id, seen in versions_of.items():
            assert [version for _, version in sorted(seen)] == list(range(UPDATES + 1)), row_id
    finally:
        cleanup(settings, database_url)
