"""The Avro readers give what fastavro gives, value for value (streams.avrodecode).

Two readers are checked: the C one (`streams/_avrodecode.c`, walking a plan) and the
generated Python one (its fallback and reference); `reader_kind` runs a test with each.
Bad bytes (truncated anywhere, bad UTF-8, an unknown union branch or enum index, an
overlong varint, absurd counts) must give a SerializationError from both, never a
crash and never a value.
"""

from __future__ import annotations

import decimal
import io
import json
import random
import struct
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from connectors.serde import AvroDeserializer, SerializationError
from streams.avrodecode import (
    FastAvroDeserializer,
    Unsupported,
    compile_plan,
    compile_reader,
    compiled_module,
    plan_reader,
)
from streams.fixtures import LAB_COLUMNS, LabChanges, MemoryRegistry

TABLE_ROWS: dict[str, list[dict[str, Any]]] = {
    "tenants": [{"id": "acme", "name": "Acme ünïcødé ✓", "tier": "standard"}],
    "experiments": [{"id": "exp-1", "tenant_id": "acme", "kind": "hplc", "status": "submitted",
                     "title": "x" * 300, "submitted_by": "a", "protocol": '{"a": [1, 2]}',
                     "priority": -7}],
    "instruments": [{"id": "hplc-01", "name": "HPLC", "kind": "hplc", "location": "",
                     "status": "running"}],
    "runs": [{"id": "run-1", "experiment_id": "exp-1", "instrument_id": "hplc-01",
              "status": "completed", "started_at": "2025-11-24 16:00:00+00",
              "result": '{"peaks": []}'},
             {"id": "run-2", "experiment_id": "exp-1", "instrument_id": "hplc-01",
              "status": "failed", "error": "boom"}],
    "samples": [{"id": "s-1", "tenant_id": "acme", "name": "n", "material": "m"}],
    "inventory_items": [{"id": "inv-1", "name": "acetonitrile", "lot": "L1", "quantity": "12.500",
                         "unit": "l", "reorder_level": "-0.001",
                         "expires_at": "2026-01-01 00:00:00+00", "location": "shelf"},
                        {"id": "inv-2", "name": "n", "lot": "L2", "quantity": "999999999.999",
                         "unit": "l", "reorder_level": "0", "location": ""}],
    "sensor_readings": [{"id": 9_007_199_254_740_993, "sensor_id": "f-1", "kind": "temperature",
                         "celsius": "-12.25", "door_open": True,
                         "read_at": "2025-11-24 16:00:00+00"},
                        {"id": 1, "sensor_id": "f-1", "kind": "door", "door_open": False,
                         "read_at": "2025-11-24 16:00:00+00"}],
    "trigger_rules": [{"id": "r1", "enabled": True, "event_kind": "hplc.completed",
                       "condition": "{}", "backend": "local", "command": '["x"]', "env": "{}",
                       "timeout_s": 60, "max_concurrency": 4}],
}


COMPILED = compiled_module()


def test_the_c_reader_is_built() -> None:
    # `make install` builds it (pyproject.toml ext-modules); a missing build would make
    # every "c" case below silently test Python twice
    assert COMPILED is not None and COMPILED.__name__ == "streams._avrodecode"


@pytest.fixture(params=["c", "python"])
def reader_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def deserializer(registry: Any, kind: str) -> FastAvroDeserializer:
    return FastAvroDeserializer(registry, compiled=kind == "c")


def make_reader(schema: Any, kind: str, fields: Any = None) -> Any:
    if kind == "c":
        assert COMPILED is not None
        return plan_reader(COMPILED, schema, fields=fields)
    return compile_reader(schema, fields=fields)


def exact(value: Any) -> Any:
    """A structure whose equality also tells Decimal('1.0') from Decimal('1') and 1 from True."""
    if isinstance(value, dict):
        return {key: exact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [exact(item) for item in value]
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return (type(value).__name__, value)


def lab_records() -> tuple[MemoryRegistry, list[tuple[str, bytes, bytes]]]:
    registry = MemoryRegistry()
    changes = LabChanges(registry)
    records = []
    for table, rows in TABLE_ROWS.items():
        assert table in LAB_COLUMNS
        for row in rows:
            for op, after, before in (("c", row, None), ("u", row, row), ("r", row, None),
                                      ("d", None, row)):
                topic, key, value = changes.encode(table, op, after, before,
                                                   lsn=random.randrange(1, 2**62))
                assert key is not None and value is not None
                records.append((topic, key, value))
    return registry, records


def test_every_lab_table_decodes_exactly_as_fastavro(reader_kind: str) -> None:
    registry, records = lab_records()
    old, new = AvroDeserializer(registry), deserializer(registry, reader_kind)
    for _, key, value in records:
        assert exact(new.decode(value)) == exact(old.decode(value))
        assert exact(new.decode(key)) == exact(old.decode(key))


def test_only_the_fields_asked_for_are_built(reader_kind: str) -> None:
    registry, records = lab_records()
    old, new = AvroDeserializer(registry), deserializer(registry, reader_kind)
    wanted = frozenset({"op", "after", "source"})
    for _, _, value in records:
        full = old.decode(value)
        assert full is not None
        assert exact(new.decode_fields(value, wanted)) == exact(
            {name: full[name] for name in full if name in wanted})


RICH_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Rich", "namespace": "t.ns", "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "raw", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["R", "G", "B"]}},
        {"name": "again", "type": "Color"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "money", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10,
                                   "scale": 3}},
        {"name": "fmoney", "type": {"type": "fixed", "name": "F8", "size": 8,
                                    "logicalType": "decimal", "precision": 18, "scale": 2}},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
            {"name": "x", "type": ["null", "long", "string"]}]}},
        {"name": "inners", "type": {"type": "array", "items": "t.ns.Inner"}},
        {"name": "odd", "type": {"type": "string", "logicalType": "not-known"}},
    ]}


def rich_datum(rng: random.Random) -> dict[str, Any]:
    def text() -> str:
        return "".join(rng.choice("aé✓z\x00") for _ in range(rng.randrange(0, 90)))

    return {
        "flag": rng.random() < 0.5, "small": rng.randrange(-2**31, 2**31),
        "big": rng.randrange(-2**63, 2**63), "f": rng.random(), "d": rng.uniform(-1e300, 1e300),
        "raw": rng.randbytes(rng.randrange(0, 200)), "text": text(),
        "color": rng.choice("RGB"), "again": rng.choice("RGB"),
        "tags": [text() for _ in range(rng.randrange(0, 5))],
        "counts": {text(): rng.randrange(-2**40, 2**40) for _ in range(rng.randrange(0, 4))},
        "digest": rng.randbytes(4),
        "money": Decimal(rng.randrange(-10**9, 10**9)).scaleb(-3),
        "fmoney": Decimal(rng.randrange(-10**17, 10**17)).scaleb(-2),
        "inner": {"x": rng.choice([None, rng.randrange(-9, 9), text()])},
        "inners": [{"x": rng.randrange(-2**62, 2**62)} for _ in range(rng.randrange(0, 3))],
        "odd": text(),
    }


def test_every_avro_type_reads_as_fastavro_reads_it(reader_kind: str) -> None:
    parsed = fastavro.parse_schema(RICH_SCHEMA)
    reader = make_reader(json.loads(json.dumps(RICH_SCHEMA)), reader_kind)
    rng = random.Random(15)
    for _ in range(300):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, rich_datum(rng))
        data = buffer.getvalue()
        expected = fastavro.schemaless_reader(io.BytesIO(data), parsed, None)
        value, end = reader(data, 0)
        assert exact(value) == exact(expected)
        assert end == len(data)


def test_truncated_or_corrupt_bytes_are_a_serialization_error(reader_kind: str) -> None:
    registry, records = lab_records()
    new = deserializer(registry, reader_kind)
    _, _, value = records[0]
    for cut in (6, len(value) // 2, len(value) - 1):
        with pytest.raises(SerializationError, match="does not match schema id"):
            new.decode(value[:cut])
    with pytest.raises(SerializationError, match="not Confluent-framed"):
        new.decode(b"{}")


def test_logical_types_it_does_not_generate_fall_back_to_fastavro() -> None:
    schema = {"type": "record", "name": "T", "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    with pytest.raises(Unsupported):
        compile_reader(schema)
    registry = MemoryRegistry()
    schema_id = registry.register("t-value", json.dumps(schema))
    buffer = io.BytesIO()
    buffer.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), {"at": 1_700_000_000_000})
    data = buffer.getvalue()
    assert FastAvroDeserializer(registry).decode(data) == AvroDeserializer(registry).decode(data)


def test_a_schema_nested_deeper_than_python_allows_is_read_by_fastavro() -> None:
    schema: dict[str, Any] = {"type": "array", "items": "long"}
    datum: Any = [1, 2]
    for _ in range(25):  # arrays of arrays: one nested loop each in generated code
        schema, datum = {"type": "array", "items": schema}, [datum]
    record = {"type": "record", "name": "Deep", "fields": [{"name": "x", "type": schema}]}
    registry = MemoryRegistry()
    schema_id = registry.register("deep-value", json.dumps(record))
    buffer = io.BytesIO()
    buffer.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(record), {"x": datum})
    assert FastAvroDeserializer(registry).decode(buffer.getvalue()) == {"x": datum}


def test_the_worker_decodes_inline_once_a_schema_is_known() -> None:
    import asyncio

    from streams.codec import ENVELOPE_FIELDS, CdcDecoder
    from streams.records import SourceCoordinates

    registry, records = lab_records()
    topic, key, value = records[0]
    decoder = CdcDecoder(registry)
    readers = decoder._deserializer
    assert not readers.has_reader(value, ENVELOPE_FIELDS) and not readers.has_reader(key)
    assert readers.has_reader(None) and readers.has_reader(b"{}")  # nothing to fetch
    first = asyncio.run(decoder.decode_async(key, value, SourceCoordinates(topic, 0, 0)))
    assert readers.has_reader(value, ENVELOPE_FIELDS) and readers.has_reader(key)
    assert not readers.has_reader(value)  # the whole-value reader is another one
    again = decoder.decode(key, value, SourceCoordinates(topic, 0, 0))
    assert first == again and first is not None and first.table == "tenants"


# -- the C reader against the Python one, on good and bad bytes ------------------------


def rich_bytes(count: int, seed: int) -> list[bytes]:
    parsed = fastavro.parse_schema(RICH_SCHEMA)
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, rich_datum(rng))
        out.append(buffer.getvalue())
    return out


def outcome(reader: Any, data: bytes) -> Any:
    """(value, end) exactly, or "error" for any of the errors the deserializer reports."""
    try:
        value, end = reader(data, 0)
    except (EOFError, ValueError, IndexError, KeyError, AttributeError, struct.error,
            decimal.InvalidOperation):  # what FastAvroDeserializer reports
        return "error"
    return exact(value), end


def test_the_c_reader_is_the_python_reader_on_every_cut_of_every_field() -> None:
    # every prefix of a datum: both give the same value (a prefix that happens to be a
    # whole datum), or both an error; the C reader never reads past the end
    schema = json.loads(json.dumps(RICH_SCHEMA))
    fast, slow = make_reader(schema, "c"), make_reader(schema, "python")
    projected = [make_reader(schema, kind, fields={"text", "inner"}) for kind in ("c", "python")]
    for data in rich_bytes(12, seed=3):
        for cut in range(len(data) + 1):
            assert outcome(fast, data[:cut]) == outcome(slow, data[:cut]), cut
            assert outcome(projected[0], data[:cut]) == outcome(projected[1], data[:cut]), cut


def test_random_corruption_is_an_error_or_the_python_readers_value() -> None:
    schema = json.loads(json.dumps(RICH_SCHEMA))
    fast, slow = make_reader(schema, "c"), make_reader(schema, "python")
    rng = random.Random(7)
    errors = 0
    for data in rich_bytes(40, seed=5):
        for _ in range(60):
            spoiled = bytearray(data)
            for _ in range(rng.randrange(1, 4)):
                spoiled[rng.randrange(len(spoiled))] = rng.randrange(256)
            got = outcome(fast, bytes(spoiled))
            errors += got == "error"
            if got != "error":  # the C reader is stricter only on 64-bit overflow
                assert got == outcome(slow, bytes(spoiled))
    assert errors > 100


STRING_UNION = {"type": "record", "name": "U", "fields": [
    {"name": "x", "type": ["null", "string"]},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
    {"name": "n", "type": "long"},
    {"name": "items", "type": {"type": "array", "items": "null"}}]}


@pytest.mark.parametrize(("data", "message"), [
    (b"\x02\x04\xff\xfe\x00\x00\x00", "can't decode byte 0xff"),  # bad UTF-8
    (b"\x06", "union branch 3"),  # a branch the schema does not have
    (b"\x01", "union branch -1"),
    (b"\x00\x04\x00\x00", "enum index 2"),
    (b"\x00\x00" + b"\xff" * 10 + b"\x01\x00", "varint"),  # longer than 10 bytes
    (b"\x00\x00" + b"\xff" * 9 + b"\x7f\x00", "64 bits"),
    (b"\x02\x03", "negative length"),
    (b"\x02\x40abc", "truncated"),
    (b"\x00\x00\x00\xfe\xff\xff\xff\xff\xff\xff\xff\x7f", "block of"),  # 2**62 nulls
])
def test_bad_bytes_are_one_clear_error(data: bytes, message: str) -> None:
    registry = MemoryRegistry()
    schema_id = registry.register("u-value", json.dumps(STRING_UNION))
    framed = b"\x00" + schema_id.to_bytes(4, "big") + data
    reader = FastAvroDeserializer(registry)
    with pytest.raises(SerializationError, match=f"schema id {schema_id}: .*{message}"):
        reader.decode(framed)
    assert reader._module is not None  # the C reader said it


def test_the_c_reader_reads_from_any_buffer_and_any_start() -> None:
    schema = json.loads(json.dumps(RICH_SCHEMA))
    reader = make_reader(schema, "c")
    data = rich_bytes(1, seed=11)[0]
    expected = reader(data, 0)
    assert reader(b"junk" + data, 4) == (expected[0], expected[1] + 4)
    assert reader(memoryview(bytearray(data)), 0) == expected
    with pytest.raises(EOFError):
        reader(data, len(data) + 1)
    with pytest.raises(TypeError):
        reader(data)


def test_plans_are_unsupported_exactly_where_generated_readers_are() -> None:
    recursive = {"type": "record", "name": "Node", "fields": [
        {"name": "next", "type": ["null", "Node"]}]}
    timestamp = {"type": "record", "name": "T", "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    for schema in (recursive, timestamp):
        with pytest.raises(Unsupported):
            compile_plan(schema)
        with pytest.raises(Unsupported):
            compile_reader(schema)
    deep: dict[str, Any] = {"type": "array", "items": "long"}
    for _ in range(80):
        deep = {"type": "array", "items": deep}
    assert COMPILED is not None
    with pytest.raises(Unsupported, match="nested too deeply"):
        plan_reader(COMPILED, deep)


def test_speedups_off_means_the_python_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_CDC_SPEEDUPS", "0")
    registry, records = lab_records()
    reader = FastAvroDeserializer(registry)
    assert reader._module is None
    _, _, value = records[0]
    assert exact(reader.decode(value)) == exact(AvroDeserializer(registry).decode(value))


def test_texts_the_c_reader_reuses_are_always_the_right_ones() -> None:
    # short ASCII text is handed out again from a per-reader table (512 slots): many
    # distinct, repeated and colliding strings, keys and values, read several times
    schema = {"type": "record", "name": "Texts", "fields": [
        {"name": "items", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": ["null", "string"]}}]}
    rng = random.Random(4)
    alphabet = "ab\x00~Z"
    parsed = fastavro.parse_schema(schema)
    fast, slow = make_reader(schema, "c"), make_reader(schema, "python")
    for _ in range(6):
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 34)))
                 for _ in range(3000)]
        words += ["é" + word for word in words[:50]]  # not ASCII: never reused
        datum = {"items": words, "counts": {word: rng.choice([None, word[::-1]])
                                            for word in words[:800]}}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, datum)
        data = buffer.getvalue()
        assert fast(data, 0) == slow(data, 0)
        assert fast(data, 0)[0] == datum
