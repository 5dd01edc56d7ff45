"""A table change through the real connector: an added column registers a new version
that passes BACKWARD; a breaking change stops the connector (nothing written, nothing
acknowledged) until the subject's level allows it, then the row is delivered."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cdc_helpers import (
    cdc_settings,
    cleanup,
    execute,
    read_topic,
    start_subprocess,
    stop_subprocess,
    wait_for,
)
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from registry_helpers import registry_server

pytestmark = pytest.mark.integration


@pytest.fixture
def cdc(unique_name: str, database_url: str):
    settings = cdc_settings(unique_name)
    execute(database_url,
            f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY, name text NOT NULL)",
            f"INSERT INTO public.{unique_name} VALUES (1, 'one')")
    yield settings
    cleanup(settings, database_url)
    execute(database_url, "DELETE FROM labstream.schema_registry_config WHERE subject = %s",
            params=(f"{settings.topic_prefix}.public.{unique_name}-value",))


def test_added_column_is_a_backward_compatible_new_version(
    cdc, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    table, topic = f"public.{cdc.slot_name}", f"{cdc.topic_prefix}.public.{cdc.slot_name}"
    subject = f"{topic}-value"
    connector = start_subprocess(cdc, tmp_path / "cdc.log")
    try:
        read_topic(kafka_bootstrap, topic, minimum=1, timeout=60)
        execute(database_url, f"ALTER TABLE {table} ADD COLUMN unit text",
                f"INSERT INTO {table} VALUES (2, 'two', 'ml')")
        records = read_topic(kafka_bootstrap, topic, minimum=2, timeout=60)
    finally:
        assert stop_subprocess(connector) == 0

    with registry_server(tmp_path / "registry.log") as url:
        client = SchemaRegistryClient({"url": url})
        assert client.get_versions(subject) == [1, 2]
        v1, v2 = client.get_version(subject, 1), client.get_version(subject, 2)
        level = httpx.get(f"{url}/config/{subject}", params={"defaultToGlobal": "true"}).json()
        assert level == {"compatibilityLevel": "BACKWARD"}
        # the new version reads data written with the old one: BACKWARD holds
        assert client.test_compatibility(subject, v2.schema, version=1)
        # a change that breaks old data is refused with 409 and not registered
        fields = json.loads(v2.schema.schema_str)
        before = next(f for f in fields["fields"] if f["name"] == "before")
        value = next(t for t in before["type"] if isinstance(t, dict))  # defines <topic>.Value
        value["fields"].append({"name": "required_no_default", "type": "int"})
        with pytest.raises(Exception) as refused:
            client.register_schema(subject, Schema(json.dumps(fields), "AVRO"))
        assert getattr(refused.value, "http_status_code", None) == 409
        assert client.get_versions(subject) == [1, 2]

        decode = AvroDeserializer(client)
        ctx = SerializationContext(topic, MessageField.VALUE)
        old, new = (decode(r.value(), ctx) for r in records[:2])
    assert (old["after"], new["after"]) == ({"id": 1, "name": "one"},
                                            {"id": 2, "name": "two", "unit": "ml"})
    assert records[0].value()[1:5] == v1.schema_id.to_bytes(4, "big")
    assert records[1].value()[1:5] == v2.schema_id.to_bytes(4, "big")


def test_breaking_table_change_stops_the_connector_until_the_level_allows_it(
    cdc, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    table, topic = f"public.{cdc.slot_name}", f"{cdc.topic_prefix}.public.{cdc.slot_name}"
    subject = f"{topic}-value"
    log = tmp_path / "cdc.log"
    connector = start_subprocess(cdc, log)
    try:
        read_topic(kafka_bootstrap, topic, minimum=1, timeout=60)
        # NOT NULL without a default in the schema: old records have no value for it
        execute(database_url, f"ALTER TABLE {table} ADD COLUMN qty int NOT NULL DEFAULT 0",
                f"INSERT INTO {table} VALUES (2, 'two', 5)")
        wait_for(lambda: connector.poll() is not None, 60, "the connector to stop")
    finally:
        code = stop_subprocess(connector)
    output = log.read_text()
    assert code != 0 and "incompatible" in output and subject in output, output[-2000:]
    assert "Traceback" not in output
    assert len(read_topic(kafka_bootstrap, topic, minimum=1, settle=1.0)) == 1

    with registry_server(tmp_path / "registry.log") as url:
        SchemaRegistryClient({"url": url}).set_compatibility(subject, "NONE")
    connector = start_subprocess(cdc, log)
    try:
        records = read_topic(kafka_bootstrap, topic, minimum=2, timeout=60)
    finally:
        assert stop_subprocess(connector) == 0
    assert len(records) == 2  # the row that waited is delivered, once
