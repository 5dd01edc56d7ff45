"""Stock confluent-kafka reads labstream's default output through `labstream registry serve`.

The real connector (`labstream cdc run`, a subprocess) captures a copy of every lab
table (same columns and types as migration 0001) with transaction metadata and
heartbeats on; confluent-kafka's own `DeserializingConsumer` + `AvroDeserializer`,
whose `SchemaRegistryClient` knows nothing but the registry's URL, decode every key
and value of every topic, and get what labstream's own decoder gets.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cdc_helpers import (
    Decoder,
    cdc_settings,
    cleanup,
    execute,
    read_topic,
    start_subprocess,
    stop_subprocess,
)
from confluent_kafka import DeserializingConsumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from registry_helpers import LAB_TABLES, copy_lab_tables, registry_server

from connectors.source.config import CdcSettings

pytestmark = pytest.mark.integration

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def lab_rows(p: str) -> tuple[list[str], list[str]]:
    """(rows present before the connector starts: snapshot reads, rows written while it
    streams: creates, an update, a delete, a truncate, a message) for tables `<p>_*`."""
    before = [
        f"INSERT INTO public.{p}_tenants (id, name, tier) VALUES ('t1', 'Tenant One', 'free')",
        f"INSERT INTO public.{p}_instruments (id, name, kind) VALUES ('i1', 'HPLC 1', 'hplc')",
    ]
    during = [
        f"SELECT pg_logical_emit_message(true, 'traceparent', '{TRACEPARENT}')",
        f"INSERT INTO public.{p}_experiments (id, tenant_id, kind, submitted_by, protocol, "
        "priority) VALUES ('e1', 't1', 'hplc', 'ann', '{\"column\": \"C18\"}', 7)",
        f"INSERT INTO public.{p}_runs (id, experiment_id, instrument_id, result) "
        "VALUES ('r1', 'e1', 'i1', '{\"peaks\": []}')",
        f"INSERT INTO public.{p}_samples (id, tenant_id, experiment_id, name, volume_ul) "
        "VALUES ('s1', 't1', 'e1', 'plasma', 12.50)",
        f"INSERT INTO public.{p}_inventory_items (id, name, lot, quantity, unit, expires_at) "
        "VALUES ('v1', 'methanol', 'L1', 1.250, 'ml', '2027-01-01T00:00:00Z')",
        f"INSERT INTO public.{p}_sensor_readings (sensor_id, kind, celsius) "
        "VALUES ('fridge-1', 'temperature', 4.25)",
        f"INSERT INTO public.{p}_sensor_readings (sensor_id, kind, door_open) "
        "VALUES ('door-1', 'door', true)",
        f"INSERT INTO public.{p}_trigger_rules (id, event_kind, command) "
        "VALUES ('rule-1', 'hplc.completed', '[\"echo\", \"{experiment_id}\"]')",
        f"INSERT INTO public.{p}_jobs (id, job_key, rule_id, backend) "
        "VALUES ('j1', 'rule-1:e1', 'rule-1', 'local')",
        f"INSERT INTO public.{p}_job_log_lines (job_id, seq, stream, line) "
        "VALUES ('j1', 0, 'stdout', 'hello')",
        "SELECT pg_logical_emit_message(true, 'audit', 'checked')",
    ]
    return before, during


def stock_read(bootstrap: str, registry_url: str, counts: dict[str, int]) -> dict[str, list[Any]]:
    """Every record of each topic's partition 0, decoded by the stock deserializers."""
    client = SchemaRegistryClient({"url": registry_url})
    consumer = DeserializingConsumer({
        "bootstrap.servers": bootstrap, "group.id": f"stock-{time.time_ns()}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "key.deserializer": AvroDeserializer(client),
        "value.deserializer": AvroDeserializer(client),
    })
    got: dict[str, list[Any]] = {topic: [] for topic in counts}
    try:
        consumer.assign([TopicPartition(topic, 0, 0) for topic in counts])
        deadline = time.monotonic() + 60
        while any(len(got[t]) < n for t, n in counts.items()) and time.monotonic() < deadline:
            message = consumer.poll(0.5)  # a decoding failure raises here: the test fails
            if message is not None and message.error() is None:
                got[message.topic()].append(message)
    finally:
        consumer.close()
    missing = {t: (len(got[t]), n) for t, n in counts.items() if len(got[t]) < n}
    assert not missing, f"stock consumer read fewer records than Kafka holds: {missing}"
    return got


@pytest.fixture
def lab_copy(unique_name: str, database_url: str):
    # every operation, TRUNCATE included (Debezium's default, and ours, skips it)
    settings = cdc_settings(unique_name, provide_transaction_metadata=True,
                            skipped_operations="none")
    execute(database_url, *copy_lab_tables(unique_name))
    yield settings
    cleanup(settings, database_url)


def topics_of(settings: CdcSettings) -> dict[str, str]:
    prefix, name = settings.topic_prefix, settings.slot_name
    topics = {table: f"{prefix}.public.{name}_{table}" for table in LAB_TABLES}
    topics.update(transaction=f"{prefix}.transaction", message=f"{prefix}.message",
                  heartbeat=f"__labstream-heartbeat.{prefix}")
    return topics


def test_stock_avro_deserializer_decodes_every_lab_record_type(
    lab_copy: CdcSettings, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    p = lab_copy.slot_name
    before, during = lab_rows(p)
    execute(database_url, *before)
    topics = topics_of(lab_copy)
    connector = start_subprocess(lab_copy, tmp_path / "cdc.log")
    try:
        read_topic(kafka_bootstrap, topics["tenants"], minimum=1, timeout=60)
        execute(database_url, *during)  # one transaction: its trace covers every row
        execute(database_url, f"UPDATE public.{p}_experiments SET status = 'queued'")
        execute(database_url, f"DELETE FROM public.{p}_samples")
        execute(database_url, f"TRUNCATE public.{p}_job_log_lines")
        raw = {name: read_topic(kafka_bootstrap, topic, minimum=1, timeout=60)
               for name, topic in topics.items()}
        raw["transaction"] = read_topic(kafka_bootstrap, topics["transaction"], minimum=8)
    finally:
        assert stop_subprocess(connector) == 0, (tmp_path / "cdc.log").read_text()[-3000:]

    with registry_server(tmp_path / "registry.log") as url:
        stock = stock_read(kafka_bootstrap, url, {topics[n]: len(r) for n, r in raw.items()})

    ours = Decoder(database_url)
    ops: dict[str, list[str | None]] = {}
    for name, records in raw.items():
        decoded = stock[topics[name]][: len(records)]
        for mine, theirs in zip(records, decoded, strict=True):
            # the stock consumer and labstream's own decoder read the same bytes alike
            assert (theirs.key(), theirs.value()) == (ours(mine.key()), ours(mine.value()))
        ops[name] = [m.value().get("op") if m.value() else None for m in decoded]

    assert ops["tenants"] == ["r"] and ops["instruments"] == ["r"]
    assert ops["experiments"] == ["c", "u"]
    assert ops["samples"] == ["c", "d", None]  # delete + tombstone
    assert ops["job_log_lines"] == ["c", "t"]
    for table in ("runs", "inventory_items", "trigger_rules", "jobs"):
        assert ops[table] == ["c"], table
    assert ops["sensor_readings"] == ["c", "c"]
    assert ops["message"] == ["m"]
    statuses = [m.value()["status"] for m in stock[topics["transaction"]]]
    assert statuses.count("BEGIN") == statuses.count("END") >= 4
    assert stock[topics["heartbeat"]][0].key() == {"serverName": lab_copy.topic_prefix}

    sample = stock[topics["samples"]][0].value()["after"]
    assert sample["volume_ul"] == Decimal("12.50") and sample["name"] == "plasma"
    item = stock[topics["inventory_items"]][0].value()["after"]
    assert item["quantity"] == Decimal("1.250")
    experiment = stock[topics["experiments"]][1].value()
    assert experiment["before"]["status"] == "submitted"
    assert experiment["after"]["status"] == "queued"
    assert stock[topics["message"]][0].value()["message"]["content"] == b"checked"
    # the connector's PRODUCER span is a child of the transaction's trace
    headers = dict(stock[topics["runs"]][0].headers() or [])
    assert headers["traceparent"].decode().split("-")[1] == TRACEPARENT.split("-")[1]
