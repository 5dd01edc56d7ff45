"""The compiled JsonConverter writer equals the reference path character for character.

Reference: `connectjson.dumps(connectjson.value_converter(schema)(value))` (the path
whose output the JsonConverter fidelity tests pin to Jackson's rules).
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import connectjson, jsonwriter
from connectors.envelope import (
    MESSAGE_KEY_CONNECT,
    MESSAGE_VALUE_CONNECT,
    TRANSACTION_VALUE_CONNECT,
    SourceInfo,
    TransactionInfo,
    build_change_event,
)
from connectors.pgoutput import Relation, RelationColumn
from connectors.schema import TableSchema
from connectors.serde import JsonConverterSerializer

# PostgreSQL text never holds NUL (the reference path's float marker relies on that);
# everything else may appear: control characters, backslashes, quotes, non-BMP.
TRICKY = ["", "\\", '"', "\\u001f", "\\\\u00ab", "\x01\x1f\x7f", "\x0b\x1a", "é€😀", "\n\r\t\b\f",
          "\u2028\u2029", "a\\\x1fb", "F1.0", "\\u0000F1.0"]
strings = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=20),
    st.sampled_from(TRICKY),
    st.lists(st.sampled_from(TRICKY), max_size=4).map("".join),
)
doubles = st.floats() | st.sampled_from([0.0, -0.0, 1e7, 1e-3, 9.999e-4, 5e-324, math.nan])
floats32 = st.floats(width=32)
LEAF_TYPES = ["int8", "int16", "int32", "int64", "float", "double", "boolean", "string",
              "bytes"]


def leaf_schema(kind: str) -> dict[str, Any]:
    return {"type": kind, "optional": True}


field_names = st.one_of(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
                        st.sampled_from(["é", "a\x1fb", 'q"', "\\"]))
schemas = st.recursive(
    st.sampled_from(LEAF_TYPES).map(leaf_schema),
    lambda children: st.one_of(
        children.map(lambda items: {"type": "array", "items": items, "optional": True}),
        st.lists(st.tuples(field_names, children), max_size=5,
                 unique_by=lambda pair: pair[0]).map(lambda fields: {
                     "type": "struct", "optional": True,
                     "fields": [{**schema, "field": name} for name, schema in fields]}),
    ),
    max_leaves=12,
)


def values_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema["type"]
    if kind == "struct":
        return st.fixed_dictionaries({f["field"]: values_for(f) for f in schema["fields"]})
    if kind == "array":
        return st.lists(values_for(schema["items"]), max_size=4)
    leaf: st.SearchStrategy[Any] = {
        "int8": st.integers(-128, 127), "int16": st.integers(-(2**15), 2**15 - 1),
        "int32": st.integers(-(2**31), 2**31 - 1), "int64": st.integers(-(2**63), 2**63 - 1),
        "float": floats32, "double": doubles, "boolean": st.booleans(), "string": strings,
        "bytes": st.binary(max_size=12),
    }[kind]
    return st.none() | leaf


def reference(schema: dict[str, Any], value: Any) -> str:
    return connectjson.dumps(connectjson.value_converter(schema)(value))


@given(st.data(), schemas)
@settings(deadline=None, max_examples=400)
def test_compiled_encoder_equals_the_reference_path(data: st.DataObject,
                                                    schema: dict[str, Any]) -> None:
    value = data.draw(st.none() | values_for(schema))
    expected = reference(schema, value)
    assert jsonwriter.compile_encoder(schema)(value) == expected
    if "NaN" not in expected and "Infinity" not in expected:
        json.loads(expected)  # valid JSON either way


@given(strings)
def test_strings_are_escaped_like_jackson(text: str) -> None:
    encoded = jsonwriter.compile_encoder({"type": "string", "optional": False})(text)
    assert encoded == reference({"type": "string", "optional": False}, text)
    assert json.loads(encoded) == text
    if "\\" not in text:  # then every backslash in the output starts an escape
        lower_hex = (f"\\u00{i:02x}" for i in range(0x20) if f"{i:02x}" != f"{i:02X}")
        assert not any(escape in encoded for escape in lower_hex)


def test_known_escapes_and_numbers() -> None:
    schema = {"type": "struct", "fields": [
        {"type": "double", "optional": True, "field": "d"},
        {"type": "float", "optional": True, "field": "f"},
        {"type": "string", "optional": True, "field": "s"},
        {"type": "bytes", "optional": True, "field": "b"},
        {"type": "array", "items": {"type": "double", "optional": True}, "optional": True,
         "field": "a"},
    ]}
    value = {"d": 1e10, "f": 0.5, "s": 'é\n\x1f"\\u001f', "b": b"\x00", "a": [math.nan, None, 2.0]}
    assert jsonwriter.compile_encoder(schema)(value) == (
        '{"d":1.0E10,"f":0.5,"s":"é\\n\\u001F\\"\\\\u001f","b":"AA==","a":["NaN",null,2.0]}')


COLUMNS = (
    RelationColumn(True, "id", 20, -1),  # int8
    RelationColumn(False, "label", 25, -1),  # text
    RelationColumn(False, "amount", 1700, ((10 << 16) | 2) + 4),  # numeric(10,2)
    RelationColumn(False, "ratio", 1700, -1),  # numeric, variable scale
    RelationColumn(False, "temp", 701, -1),  # float8
    RelationColumn(False, "weight", 700, -1),  # float4
    RelationColumn(False, "raw", 17, -1),  # bytea
    RelationColumn(False, "tags", 1009, -1),  # text[]
    RelationColumn(False, "levels", 1022, -1),  # float8[]
    RelationColumn(False, "seen_at", 1184, -1),  # timestamptz
    RelationColumn(False, "doc", 3802, -1),  # jsonb
    RelationColumn(False, "ok", 16, -1),  # bool
)
TABLE = TableSchema.from_relation(
    Relation(42, "public", "readings", "d", COLUMNS), topic_prefix="lab",
    not_null_columns={"id", "label"}, primary_key=["id"],
)


def float_text(value: float) -> str:
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(repr(value), repr(value))


row_texts = st.tuples(
    st.integers(-(2**63), 2**63 - 1).map(str), strings,
    st.none() | st.sampled_from(["0.00", "-12.50", "NaN"]),
    st.none() | st.sampled_from(["1.5", "0", "-1e-20"]),
    st.none() | doubles.map(float_text), st.none() | floats32.map(float_text),
    st.none() | st.binary(max_size=10).map(lambda b: "\\x" + b.hex()),
    st.none() | st.sampled_from(["{}", '{a,NULL,"b\\\\c","é\x01"}']),
    st.none() | st.sampled_from(["{1.5,NaN,-Infinity,NULL}", "{}", "{1e300}"]),
    st.none() | st.sampled_from(["2024-02-29 23:59:59.999999+01", "infinity"]),
    st.none() | strings.map(json.dumps),
    st.none() | st.sampled_from(["t", "f"]),
)


@given(row_texts, st.none() | row_texts, st.sampled_from(["c", "u", "d"]), st.booleans())
@settings(deadline=None, max_examples=200)
def test_serializer_bytes_equal_the_reference_document(
    after_text: tuple[Any, ...], before_text: tuple[Any, ...] | None, op: Any, tx: bool
) -> None:
    after = TABLE.row_to_values(after_text)
    before = TABLE.row_to_values(before_text) if before_text is not None else None
    source = SourceInfo(name="lab", db="lab", schema="public", table="readings",
                        ts_us=1_700_000_000_000_001, lsn=2**40, tx_id=7, last_commit_lsn=None)
    transaction = TransactionInfo("7:9", 3, 2) if tx else None
    event = build_change_event(TABLE, op, before, after, source, transaction, ts_us=5)
    serializer = JsonConverterSerializer()
    for part, payload in (("value", event.value), ("key", event.key)):
        schema = TABLE.value_connect_schema if part == "value" else TABLE.key_connect_schema
        assert schema is not None
        expected = (f'{{"schema":{connectjson.dumps(schema)},'
                    f'"payload":{reference(schema, payload)}}}').encode()
        made = serializer.value_bytes(event) if part == "value" else serializer.key_bytes(event)
        assert made == expected


def test_fixed_schemas_compile_to_the_reference_output() -> None:
    end = {"status": "END", "id": "1:2", "event_count": 3,
           "data_collections": [{"data_collection": "public.t", "event_count": 3}], "ts_ms": 9}
    assert jsonwriter.compile_encoder(TRANSACTION_VALUE_CONNECT)(end) == \
        reference(TRANSACTION_VALUE_CONNECT, end)
    source = SourceInfo(name="lab", db="lab", schema="", table="", ts_us=1, lsn=None).to_dict()
    message = {"op": "m", "ts_ms": 1, "source": source, "transaction": None,
               "message": {"prefix": "p\x02", "content": b"\x00\xff"}}
    assert jsonwriter.compile_encoder(MESSAGE_VALUE_CONNECT)(message) == \
        reference(MESSAGE_VALUE_CONNECT, message)
    key = {"prefix": None}
    assert jsonwriter.compile_encoder(MESSAGE_KEY_CONNECT)(key) == \
        reference(MESSAGE_KEY_CONNECT, key)


@given(st.none() | st.integers(0, 2**64 - 1), st.none() | st.integers(0, 2**64 - 1))
def test_source_sequence_is_the_json_list_of_lsn_strings(last: int | None,
                                                         current: int | None) -> None:
    source = SourceInfo(name="lab", db="lab", schema="s", table="t", ts_us=1, lsn=current,
                        last_commit_lsn=last)
    as_text = [None if lsn is None else str(lsn) for lsn in (last, current)]
    assert source.sequence == json.dumps(as_text, separators=(",", ":"))
