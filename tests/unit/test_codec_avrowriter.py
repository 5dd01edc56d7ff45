"""The compiled Avro writer produces exactly fastavro's bytes."""

from __future__ import annotations

import io
import math
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.avrowriter import UnsupportedSchema, compile_writer
from connectors.envelope import (
    MESSAGE_VALUE_AVRO,
    TRANSACTION_VALUE_AVRO,
    SourceInfo,
    TransactionInfo,
    build_change_event,
    message_event,
    transaction_end_event,
)
from connectors.pgoutput import Relation, RelationColumn
from connectors.schema import TableSchema


def fastavro_bytes(schema: Any, datum: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), datum)
    return buffer.getvalue()


def ours(schema: Any, datum: Any) -> bytes:
    buf = bytearray()
    compile_writer(schema)(buf, datum)
    return bytes(buf)


# Every column type the mapping produces, with text values generated per type.
NUMERIC_12_3 = ((12 << 16) | 3) + 4
COLUMN_VALUES: list[tuple[int, int, st.SearchStrategy[str]]] = [
    (16, -1, st.sampled_from(["t", "f"])),
    (21, -1, st.integers(-(2**15), 2**15 - 1).map(str)),
    (23, -1, st.integers(-(2**31), 2**31 - 1).map(str)),
    (20, -1, st.integers(-(2**63), 2**63 - 1).map(str)),
    (700, -1, st.floats(width=32).map(repr)),
    (701, -1, st.floats().map(repr)),
    (1700, NUMERIC_12_3, st.decimals(min_value=-(10**9), max_value=10**9, places=3,
                                     allow_nan=False).map(lambda d: f"{d:.3f}")),
    (1700, -1, st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: f"{d:f}")),
    (25, -1, st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)),
    (17, -1, st.binary(max_size=20).map(lambda b: "\\x" + b.hex())),
    (1082, -1, st.dates().map(lambda d: d.isoformat())),
    (1083, -1, st.times().map(lambda t: t.isoformat())),
    (1114, -1, st.datetimes().map(lambda d: d.isoformat(sep=" "))),
    (1114, 3, st.datetimes().map(lambda d: d.isoformat(sep=" "))),
    (1184, -1, st.datetimes().map(lambda d: d.isoformat(sep=" ") + "+00")),
    (1186, -1, st.sampled_from(["00:00:00", "1 year 2 mons", "-3 days +01:02:03.5"])),
    (2950, -1, st.uuids().map(str)),
    (3802, -1, st.just('{"a": 1}')),
    (600, -1, st.tuples(st.floats(allow_nan=False), st.floats(allow_nan=False))
     .map(lambda p: f"({p[0]!r},{p[1]!r})")),
    (1560, 8, st.integers(0, 255).map(lambda n: f"{n:08b}")),
    (1007, -1, st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=5)
     .map(lambda xs: "{" + ",".join("NULL" if x is None else str(x) for x in xs) + "}")),
    (1009, -1, st.lists(st.one_of(st.none(), st.text("abc ", max_size=4)), max_size=5)
     .map(lambda xs: "{" + ",".join("NULL" if x is None else f'"{x}"' for x in xs) + "}")),
]
COLUMNS = tuple(
    RelationColumn(index == 0, f"c{index}", oid, typmod)
    for index, (oid, typmod, _) in enumerate(COLUMN_VALUES)
)
TABLE = TableSchema.from_relation(
    Relation(9, "public", "all_types", "d", COLUMNS), topic_prefix="lab",
    not_null_columns={"c0", "c2", "c8"},
)
rows = st.tuples(*[
    st.one_of(st.none(), values) if index not in (0, 2, 8) else values
    for index, (_, _, values) in enumerate(COLUMN_VALUES)
])
SOURCE = SourceInfo(name="lab", db="lab", schema="public", table="all_types", ts_us=-5,
                    lsn=None, tx_id=None, snapshot="first")


@given(rows, rows, st.sampled_from(["c", "u", "d", "r"]), st.booleans())
@settings(max_examples=200, deadline=None)
def test_envelope_bytes_equal_fastavro(before_text, after_text, op, with_tx) -> None:
    before = TABLE.row_to_values(before_text) if op in ("u", "d") else None
    after = TABLE.row_to_values(after_text) if op != "d" else None
    transaction = TransactionInfo("1:2", 3, 4) if with_tx else None
    event = build_change_event(TABLE, op, before, after, SOURCE, transaction, ts_us=7)
    assert ours(TABLE.value_avro, event.value) == fastavro_bytes(TABLE.value_avro, event.value)
    if event.key is not None:
        assert ours(TABLE.key_avro, event.key) == fastavro_bytes(TABLE.key_avro, event.key)


@given(st.dictionaries(st.text(max_size=5), st.integers(0, 2**40), max_size=4),
       st.binary(max_size=30), st.text(max_size=10))
@settings(deadline=None)
def test_fixed_schema_events_equal_fastavro(collections, content, prefix) -> None:
    end = transaction_end_event("lab", "1:2", 3, collections)
    assert ours(TRANSACTION_VALUE_AVRO, end.value) == \
        fastavro_bytes(TRANSACTION_VALUE_AVRO, end.value)
    message = message_event("lab", prefix, content, SOURCE, None, ts_ms=1)
    assert ours(MESSAGE_VALUE_AVRO, message.value) == \
        fastavro_bytes(MESSAGE_VALUE_AVRO, message.value)


def test_decimal_objects_are_encoded_like_fastavro() -> None:
    schema = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
    for value in (Decimal("1.50"), Decimal("-0.01"), Decimal("12345678.99")):
        assert ours(schema, value) == fastavro_bytes(schema, value)


def test_wrong_types_raise_instead_of_writing_garbage() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}
    for bad in ({"n": "1"}, {"n": 2**63}, {"n": True}, {}):
        with pytest.raises((TypeError, ValueError, KeyError)):
            ours(schema, bad)


def test_unsupported_constructs_are_reported() -> None:
    with pytest.raises(UnsupportedSchema):
        compile_writer(["int", "string"])
    with pytest.raises(UnsupportedSchema):
        compile_writer({"type": "enum", "name": "E", "symbols": ["A"]})


def test_nan_floats_are_written() -> None:
    assert ours("double", math.nan) == fastavro_bytes("double", math.nan)


@given(st.one_of(st.integers(-(2**63), 2**63 - 1),
                 st.integers(0, 63).map(lambda bits: 2**bits - 1),
                 st.integers(0, 63).map(lambda bits: -(2**bits))))
def test_long_varints_equal_fastavro_at_every_length(value: int) -> None:
    assert ours("long", value) == fastavro_bytes("long", value)
