"""Avro (Confluent framing) and JsonConverter serialisation of change events."""

from __future__ import annotations

import base64
import json
import math
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.envelope import (
    SourceInfo,
    TransactionInfo,
    build_change_event,
    message_event,
    tombstone_for,
    transaction_end_event,
)
from connectors.exceptions import SerializationError
from connectors.pgoutput import Relation, RelationColumn
from connectors.registry.base import RegisteredSchema, schema_fingerprint
from connectors.schema import TableSchema
from connectors.serde import (
    AvroDeserializer,
    AvroSerializer,
    JsonConverterSerializer,
    serializer_from_settings,
)


class MemoryRegistry:
    """In-process SchemaRegistry for unit tests (same contract as the real ones)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], int] = {}
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema_str: str) -> int:
        key = (subject, schema_fingerprint(schema_str))
        if key not in self.by_key:
            self.by_key[key] = len(self.schemas) + 1
            self.schemas[self.by_key[key]] = schema_str
            self.subjects.setdefault(subject, []).append(self.by_key[key])
        return self.by_key[key]

    def get_schema(self, schema_id: int) -> str:
        return self.schemas[schema_id]

    def latest(self, subject: str) -> RegisteredSchema | None:
        ids = self.subjects.get(subject)
        if not ids:
            return None
        return RegisteredSchema(subject, len(ids), ids[-1], self.schemas[ids[-1]])


NUMERIC_10_2 = ((10 << 16) | 2) + 4
COLUMNS = (
    RelationColumn(True, "id", 20, -1),  # int8
    RelationColumn(False, "label", 25, -1),  # text
    RelationColumn(False, "amount", 1700, NUMERIC_10_2),
    RelationColumn(False, "ratio", 1700, -1),  # variable scale
    RelationColumn(False, "temp", 701, -1),  # float8
    RelationColumn(False, "small", 21, -1),  # int2
    RelationColumn(False, "raw", 17, -1),  # bytea
    RelationColumn(False, "tags", 1009, -1),  # text[]
    RelationColumn(False, "seen_at", 1184, -1),  # timestamptz
    RelationColumn(False, "day", 1082, -1),  # date
    RelationColumn(False, "ok", 16, -1),  # bool
)
TABLE = TableSchema.from_relation(
    Relation(42, "public", "readings", "f", COLUMNS), topic_prefix="lab",
    not_null_columns={"id", "label"}, primary_key=["id"],
)
SOURCE = SourceInfo(name="lab", db="lab", schema="public", table="readings",
                    ts_us=1_700_000_000_000_001, lsn=2**40, tx_id=2**33, last_commit_lsn=5)

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=30)
rows = st.fixed_dictionaries({
    "id": st.integers(-(2**63), 2**63 - 1).map(str),
    "label": text,
    "amount": st.one_of(st.none(), st.decimals(min_value=Decimal("-99999999.99"),
                                               max_value=Decimal("99999999.99"), places=2,
                                               allow_nan=False).map(lambda d: f"{d:.2f}"),
                        st.just("NaN")),
    "ratio": st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False)
                       .map(lambda d: f"{d:f}")),
    "temp": st.one_of(st.none(), st.floats().map(repr).map(
        lambda r: {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(r, r))),
    "small": st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1).map(str)),
    "raw": st.one_of(st.none(), st.binary(max_size=40).map(lambda b: "\\x" + b.hex())),
    "tags": st.one_of(st.none(), st.just("{}"), st.just('{a,NULL,"b c","é"}')),
    "seen_at": st.one_of(st.none(), st.just("2024-02-29 23:59:59.999999+01"),
                         st.just("0001-01-01 00:00:00+00")),
    "day": st.one_of(st.none(), st.just("1970-01-01"), st.just("infinity")),
    "ok": st.one_of(st.none(), st.sampled_from(["t", "f"])),
})


def as_avro_read(values: dict[str, Any]) -> dict[str, Any]:
    """What fastavro gives back: Decimal for Connect Decimal bytes, the rest unchanged."""
    out = dict(values)
    if out["amount"] is not None:
        out["amount"] = Decimal(int.from_bytes(out["amount"], "big", signed=True)).scaleb(-2)
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@given(rows, rows)
@settings(max_examples=150, deadline=None)
def test_avro_round_trip_for_generated_rows(before_text: dict, after_text: dict) -> None:
    registry = MemoryRegistry()
    serializer, deserializer = AvroSerializer(registry), AvroDeserializer(registry)
    before = TABLE.row_to_values(tuple(before_text[c.name] for c in COLUMNS))
    after = TABLE.row_to_values(tuple(after_text[c.name] for c in COLUMNS))
    event = build_change_event(TABLE, "u", before, after, SOURCE,
                               TransactionInfo("8589934592:1099511627776", 3, 2), ts_us=123_456)
    key = deserializer.decode(serializer.key_bytes(event))
    value = deserializer.decode(serializer.value_bytes(event))
    assert key == {"id": after["id"]}
    assert same(value["after"], as_avro_read(after))
    assert same(value["before"], as_avro_read(before))
    assert value["source"] == SOURCE.to_dict()
    assert value["transaction"] == {"id": "8589934592:1099511627776", "total_order": 3,
                                    "data_collection_order": 2}
    assert (value["op"], value["ts_ms"], value["ts_us"], value["ts_ns"]) == \
        ("u", 123, 123_456, 123_456_000)


def test_confluent_framing_and_subjects() -> None:
    registry = MemoryRegistry()
    serializer = AvroSerializer(registry)
    event = build_change_event(TABLE, "c", None, TABLE.row_to_values(
        ("1", "x", None, None, None, None, None, None, None, None, None)), SOURCE, None, 1)
    value = serializer.value_bytes(event)
    key = serializer.key_bytes(event)
    assert value[0] == 0 and key[0] == 0
    (schema_id,) = struct.unpack(">I", value[1:5])
    assert registry.get_schema(schema_id) == json.dumps(TABLE.value_avro, separators=(",", ":"))
    assert set(registry.subjects) == {"lab.public.readings-key", "lab.public.readings-value"}
    # Registered once per table version, not once per record.
    serializer.value_bytes(event)
    assert len(registry.schemas) == 2
    assert serializer.value_bytes(tombstone_for(event)) is None


def test_table_without_primary_key_has_null_keys() -> None:
    table = TableSchema.from_relation(
        Relation(7, "public", "log", "d", (RelationColumn(False, "line", 25, -1),)),
        topic_prefix="lab",
    )
    assert table.key_avro is None and table.key_connect_schema is None
    event = build_change_event(table, "c", None, {"line": "x"}, SOURCE, None, 1)
    assert event.key is None
    assert AvroSerializer(MemoryRegistry()).key_bytes(event) is None
    assert JsonConverterSerializer().key_bytes(event) is None


def test_schema_evolution_adding_a_nullable_column_is_backward_compatible() -> None:
    import io

    from fastavro import parse_schema, schemaless_reader, schemaless_writer

    old_columns = COLUMNS[:2]
    old = TableSchema.from_relation(Relation(42, "public", "readings", "d", old_columns),
                                    topic_prefix="lab", not_null_columns={"id", "label"})
    new = TableSchema.from_relation(
        Relation(42, "public", "readings", "d",
                 (*old_columns, RelationColumn(False, "note", 25, -1))),
        topic_prefix="lab", not_null_columns={"id", "label"})
    assert old.fingerprint != new.fingerprint
    # A reader with the new schema reads data written with the old one (BACKWARD).
    event = build_change_event(old, "c", None, {"id": 1, "label": "a"}, SOURCE, None, 1)
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(old.value_avro), event.value)
    buffer.seek(0)
    read = schemaless_reader(buffer, parse_schema(old.value_avro), parse_schema(new.value_avro))
    assert read["after"] == {"id": 1, "label": "a", "note": None}


def test_json_converter_bytes() -> None:
    row = TABLE.row_to_values(("5", "é", "12.34", "1.50", "NaN", "-1", "\\x00ff", "{a}",
                               "2024-01-01 00:00:00+00", "1970-01-02", "t"))
    event = build_change_event(TABLE, "c", None, row, SOURCE, None, ts_us=1_000)
    data = JsonConverterSerializer().value_bytes(event)
    assert data.startswith(b'{"schema":{"type":"struct","fields":[{"type":"struct"')
    document = json.loads(data)
    after = document["payload"]["after"]
    assert base64.b64decode(after["amount"]) == (1234).to_bytes(2, "big", signed=True)
    assert after["ratio"] == {"scale": 1, "value": base64.b64encode(b"\x0f").decode()}
    assert after["temp"] == "NaN"  # Jackson quotes non-finite numbers
    assert after["raw"] == "AP8="
    assert after["label"] == "é" and "é".encode() in data  # UTF-8, not \u escapes
    assert document["schema"]["name"] == "lab.public.readings.Envelope"
    assert document["schema"]["version"] == 2


def test_fixed_schema_events_serialize_in_both_formats() -> None:
    registry = MemoryRegistry()
    avro, json_serializer = AvroSerializer(registry), JsonConverterSerializer()
    end = transaction_end_event("lab", "9:10", 5, {"public.readings": 2})
    message = message_event("lab", "traceparent", b"\x00\x01", SOURCE, None, ts_ms=1)
    for event in (end, message):
        decoded = AvroDeserializer(registry).decode(avro.value_bytes(event))
        assert decoded == event.value
        assert AvroDeserializer(registry).decode(avro.key_bytes(event)) == event.key
        assert json.loads(json_serializer.value_bytes(event))["payload"] is not None
    assert "lab.transaction-value" in registry.subjects
    assert "lab.message-key" in registry.subjects


def test_bad_framing_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        AvroDeserializer(MemoryRegistry()).decode(b'{"json": true}')


def test_value_that_does_not_fit_the_schema_is_a_serialization_error() -> None:
    event = build_change_event(TABLE, "c", None, {"id": "not an int"}, SOURCE, None, 1)
    with pytest.raises(SerializationError, match=r"lab\.public\.readings"):
        AvroSerializer(MemoryRegistry()).value_bytes(event)


def test_serializer_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = MemoryRegistry()
    assert isinstance(serializer_from_settings(registry=registry), AvroSerializer)
    monkeypatch.setenv("LABSTREAM_CDC_SERIALIZER", "json")
    assert isinstance(serializer_from_settings(), JsonConverterSerializer)
