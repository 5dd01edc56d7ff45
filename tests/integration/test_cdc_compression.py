"""CDC topics are lz4-compressed by default, and every Kafka client the lab uses reads them.

The connector's records (JsonConverter ones repeat their schema in every record) go out
in lz4 batches; kafka-python (replay) and aiokafka (Faust) need their lz4 codecs
installed to read them, which pyproject.toml's `[lz4]` extras provide.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioPartition
from cdc_helpers import cdc_settings, cleanup, execute, offsets_row, read_topic, running, wait_for
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KpPartition

from connectors.source.config import CdcSettings

pytestmark = pytest.mark.integration
ROWS = 200


def _kafka_python_values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=15_000)
    try:
        consumer.assign([KpPartition(topic, 0)])
        consumer.seek_to_beginning()
        values = []
        for message in consumer:
            values.append(message.value)
            if len(values) == count:
                break
        return values
    finally:
        consumer.close()


async def _aiokafka_values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([AioPartition(topic, 0)])
        await consumer.seek_to_beginning()
        values: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(values) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(record.value for record in records)
        return values
    finally:
        await consumer.stop()


def _partition_bytes(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        found: list[int] = []

        def walk(node: Any) -> None:  # the response nests dirs -> topics -> partitions
            if isinstance(node, dict):
                if node.get("name") == topic or node.get("topic") == topic:
                    found.extend(p["partition_size"] for p in node.get("partitions", []))
                for child in node.values():
                    walk(child)
            elif isinstance(node, list):
                for child in node:
                    walk(child)

        walk(admin.describe_log_dirs({topic: [0]}))
        assert found, f"no log dir reports {topic}"
        return sum(found)
    finally:
        admin.close()


def test_default_is_lz4_and_every_client_reads_it(unique_name, database_url,
                                                  kafka_bootstrap) -> None:
    assert CdcSettings.model_fields["compression_type"].default == "lz4"
    table = f"public.{unique_name}"
    execute(database_url, f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
    settings = cdc_settings(unique_name, serializer="json")
    assert settings.compression_type == "lz4"
    topic = f"{unique_name}.{table}"
    try:
        with running(settings, database_url, kafka_bootstrap):
            wait_for(lambda: (row := offsets_row(database_url, unique_name))
                     and row["snapshot_state"] == "done", 30, "the snapshot")
            execute(database_url, f"INSERT INTO {table} SELECT g, 'note ' || g "
                    f"FROM generate_series(1, {ROWS}) g")
            confluent = [m.value() for m in read_topic(kafka_bootstrap, topic, minimum=ROWS)]
        assert len(confluent) == ROWS
        assert [json.loads(v)["payload"]["after"]["id"] for v in confluent] == \
            list(range(1, ROWS + 1))
        assert _kafka_python_values(kafka_bootstrap, topic, ROWS) == confluent
        assert asyncio.run(_aiokafka_values(kafka_bootstrap, topic, ROWS)) == confluent
        # compressed on the broker: the log is far smaller than the records it holds
        # (uncompressed it would be larger: every record plus its batch overhead)
        raw = sum(len(v) for v in confluent)
        assert _partition_bytes(kafka_bootstrap, topic) < raw / 3
    finally:
        cleanup(settings, database_url)


def test_compression_type_is_checked() -> None:
    with pytest.raises(ValueError, match="compression_type"):
        CdcSettings(compression_type="lz5")  # type: ignore[arg-type]
