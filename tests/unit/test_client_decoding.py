"""labstream_client (clients/python) decodes what labstream's serializers write, Avro and
JSON alike, into typed envelopes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from labstream_client import (
    ChangeEvent,
    DecodeError,
    Decoder,
    RegistryClient,
    Transaction,
    TransactionMarker,
)
from test_codec_serde import COLUMNS, SOURCE, TABLE, MemoryRegistry, rows, same

from connectors.envelope import (
    TransactionInfo,
    build_change_event,
    message_event,
    transaction_begin_event,
    transaction_end_event,
)
from connectors.serde import AvroSerializer, JsonConverterSerializer


class MemoryRegistryClient(RegistryClient):
    """The client's registry lookup, answered from an in-process registry."""

    def __init__(self, registry: MemoryRegistry) -> None:
        super().__init__("http://registry.invalid")
        self.registry = registry
        self.fetched: list[int] = []

    def fetch(self, schema_id: int) -> str:
        self.fetched.append(schema_id)
        if schema_id not in self.registry.schemas:
            raise DecodeError(f"schema id {schema_id} is not in the registry")
        return self.registry.get_schema(schema_id)


def decoders() -> tuple[AvroSerializer, Decoder, JsonConverterSerializer, Decoder]:
    registry = MemoryRegistry()
    return (AvroSerializer(registry), Decoder(registry=MemoryRegistryClient(registry)),
            JsonConverterSerializer(), Decoder())


@given(rows, rows)
@settings(max_examples=40, deadline=None)
def test_avro_and_json_records_decode_to_the_same_values(before: dict, after: dict) -> None:
    avro, from_avro, as_json, from_json = decoders()
    old, new = (TABLE.row_to_values(tuple(r[c.name] for c in COLUMNS)) for r in (before, after))
    event = build_change_event(TABLE, "u", old, new, SOURCE, None, ts_us=1_000)
    via_avro = from_avro.raw(avro.value_bytes(event))
    via_json = from_json.raw(as_json.value_bytes(event))
    assert same(via_avro, via_json), (via_avro, via_json)
    assert from_avro.key(avro.key_bytes(event)) == from_json.key(as_json.key_bytes(event))


def test_change_events_become_typed_envelopes() -> None:
    avro, decoder, _, _ = decoders()
    row = TABLE.row_to_values(("5", "é", "12.34", None, "1.5", None, None, None, None, None, "t"))
    event = build_change_event(TABLE, "c", None, row, SOURCE, TransactionInfo("9:10", 3, 1),
                               ts_us=2_000)
    change = decoder.value(avro.value_bytes(event))
    assert isinstance(change, ChangeEvent)
    assert (change.op, change.before, change.ts_ms) == ("c", None, 2)
    assert change.row is change.after and change.after["label"] == "é"
    assert str(change.after["amount"]) == "12.34"
    assert (change.source.table, change.source.tx_id, change.source.lsn) == (
        "readings", 2**33, 2**40)
    assert change.source.dedup_key == (2**40, event.value["source"]["sequence"])
    assert change.transaction == Transaction("9:10", 3, 1)
    assert decoder.value(None) is None  # tombstone


def test_transaction_markers_and_messages_are_typed() -> None:
    avro, decoder, as_json, from_json = decoders()
    begin = transaction_begin_event("lab", "9:10", 1)
    end = transaction_end_event("lab", "9:10", 5, {"public.readings": 2})
    for serializer, reader in ((avro, decoder), (as_json, from_json)):
        marker = reader.value(serializer.value_bytes(end))
        assert isinstance(marker, TransactionMarker)
        assert (marker.status, marker.id, marker.event_count) == ("END", "9:10", 2)
        assert isinstance(reader.value(serializer.value_bytes(begin)), TransactionMarker)
        message = reader.value(serializer.value_bytes(
            message_event("lab", "audit", b"\x00\x01", SOURCE, None, ts_ms=1)))
        assert isinstance(message, ChangeEvent) and message.op == "m"
        assert message.message is not None and message.message.content == b"\x00\x01"


def test_schemas_are_fetched_once_per_id() -> None:
    avro, decoder, _, _ = decoders()
    row = TABLE.row_to_values(("1", "a", None, None, None, None, None, None, None, None, None))
    data = avro.value_bytes(build_change_event(TABLE, "c", None, row, SOURCE, None, ts_us=1))
    for _ in range(3):
        decoder.value(data)
    assert isinstance(decoder.registry, MemoryRegistryClient)
    assert len(decoder.registry.fetched) == 1


def test_undecodable_records_name_the_cause() -> None:
    with pytest.raises(DecodeError, match="pass registry_url"):
        Decoder().value(b"\x00\x3b\x9a\xca\x00rest")
    with pytest.raises(DecodeError, match="neither Confluent-framed Avro"):
        Decoder().value(b"\x07garbage")
    with pytest.raises(DecodeError, match="not valid JSON"):
        Decoder().value(b"{nope")
    _, decoder, _, _ = decoders()
    with pytest.raises(DecodeError, match="schema id 7 is not in the registry"):
        decoder.value(b"\x00\x00\x00\x00\x07\x02")
    assert Decoder().value(json.dumps({"op": "c"}).encode()) == {"op": "c"}  # no source


def test_registry_credentials_in_the_url_become_basic_auth() -> None:
    client = RegistryClient("https://reader:s%40cret@registry.example:8443/base/")
    assert client.url == "https://registry.example:8443/base"
    assert client._headers["Authorization"] == "Basic cmVhZGVyOnNAY3JldA=="
