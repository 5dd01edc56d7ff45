"""The compiled writers (connectors/_speedups.c) write the same bytes as the Python ones.

Every column type, every operation (c, u, d, r, t, m, transaction BEGIN/END) and both
formats are written twice: by the serializers with the compiled writer and with
`LABSTREAM_CDC_SPEEDUPS=0` (the pure-Python writers, themselves pinned to fastavro and
to the JsonConverter reference by test_codec_avrowriter.py / test_codec_jsonwriter.py).
Values the C code does not take (subclasses, out of range, unencodable strings) must
come back as None from it, and then give the Python writer's bytes or its error.
"""

from __future__ import annotations

import enum
import math
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# the neighbouring test modules' fixtures (pytest puts tests/unit on sys.path)
from test_codec_avrowriter import TABLE as AVRO_TABLE  # type: ignore[import-not-found]
from test_codec_avrowriter import rows as avro_rows
from test_codec_jsonwriter import TABLE as JSON_TABLE  # type: ignore[import-not-found]
from test_codec_jsonwriter import row_texts as json_rows
from test_codec_jsonwriter import schemas as connect_schemas
from test_codec_jsonwriter import values_for

from connectors import jsonwriter, pgoutput, speedups
from connectors import schema as schema_module
from connectors.envelope import (
    ChangeEvent,
    SourceInfo,
    TransactionInfo,
    build_change_event,
    message_event,
    transaction_begin_event,
    transaction_end_event,
)
from connectors.exceptions import ConversionError, DecodeError, SerializationError
from connectors.pgoutput import UNCHANGED_TOAST
from connectors.schema import TableSchema
from connectors.serde import AvroSerializer, JsonConverterSerializer

FAST = speedups.load()


class _Registry:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def register(self, subject: str, schema_str: str) -> int:
        return self.ids.setdefault(subject, len(self.ids) + 1)


def _pair(make: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(compiled, pure Python) serializers of one kind."""
    compiled = make()
    with monkeypatch.context() as patch:
        patch.setenv("LABSTREAM_CDC_SPEEDUPS", "0")
        python = make()
    return compiled, python


def _same_output(compiled: Any, python: Any, event: ChangeEvent) -> None:
    for part in ("key_bytes", "value_bytes"):
        assert getattr(compiled, part)(event) == getattr(python, part)(event), part


def _events(table: TableSchema, before: dict[str, Any] | None, after: dict[str, Any],
            op: str, with_tx: bool) -> list[ChangeEvent]:
    source = SourceInfo(name="lab", db="lab", schema="public", table=table.table_name,
                        ts_us=1_700_000_000_000_001, lsn=2**40, tx_id=7, last_commit_lsn=12)
    tx = TransactionInfo("7:9", 3, 2) if with_tx else None
    row_before = before if op in ("u", "d") else None
    row_after = after if op in ("c", "u", "r") else None
    return [
        build_change_event(table, op, row_before, row_after, source, tx, ts_us=5),
        build_change_event(table, "t", None, None, source, tx, ts_us=5),
        message_event("lab", "audit\x01", b"\x00\xff", source, tx, ts_ms=1),
        transaction_begin_event("lab", "7:9", 11),
        transaction_end_event("lab", "7:9", 11, {"public.t": 2, "é": 1}),
    ]


def test_the_extension_is_built() -> None:
    # `make install` compiles it; a missing compiler must fail here, not slow CI silently
    import importlib

    assert importlib.import_module("connectors._speedups") is FAST is not None


@given(avro_rows, avro_rows, st.sampled_from(["c", "u", "d", "r"]), st.booleans())
@settings(max_examples=150, deadline=None)
def test_avro_compiled_equals_python_for_every_type_and_operation(
        before_text: Any, after_text: Any, op: str, with_tx: bool) -> None:
    with pytest.MonkeyPatch.context() as patch:
        compiled, python = _pair(lambda: AvroSerializer(_Registry()), patch)  # type: ignore[arg-type]
    before, after = AVRO_TABLE.row_to_values(before_text), AVRO_TABLE.row_to_values(after_text)
    for event in _events(AVRO_TABLE, before, after, op, with_tx):
        _same_output(compiled, python, event)
        # and the C writer really wrote it (None would mean: Python did)
        writer = compiled._writer(event, "value")
        assert FAST is not None and writer.plan is not None
        assert FAST.avro(writer.plan, writer.header, event.value) is not None


@given(json_rows, st.none() | json_rows, st.sampled_from(["c", "u", "d", "r"]), st.booleans())
@settings(max_examples=150, deadline=None)
def test_json_compiled_equals_python_for_every_type_and_operation(
        after_text: Any, before_text: Any, op: str, with_tx: bool) -> None:
    with pytest.MonkeyPatch.context() as patch:
        compiled, python = _pair(JsonConverterSerializer, patch)
    after = JSON_TABLE.row_to_values(after_text)
    before = JSON_TABLE.row_to_values(before_text) if before_text is not None else after
    for event in _events(JSON_TABLE, before, after, op, with_tx):
        _same_output(compiled, python, event)
        head, _encode, plan = compiled._compiled(event, "value")
        assert FAST is not None and FAST.json(plan, head, event.value) is not None


@given(st.data(), connect_schemas)
@settings(deadline=None, max_examples=300)
def test_json_plan_equals_the_compiled_python_encoder(data: st.DataObject,
                                                      schema: dict[str, Any]) -> None:
    value = data.draw(st.none() | values_for(schema))
    assert FAST is not None
    written = FAST.json(speedups.json_plan(schema), b"<", value)
    assert written == b"<" + jsonwriter.compile_encoder(schema)(value).encode() + b"}"


class _Str(str):
    pass


class _Level(enum.IntEnum):
    HIGH = 3


AVRO_RECORD = {"type": "record", "name": "R", "namespace": "t", "fields": [
    {"name": "n", "type": "long"}, {"name": "i", "type": ["null", "int"], "default": None},
    {"name": "s", "type": "string"}, {"name": "f", "type": "float"},
    {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "scale": 2,
                           "precision": 9}},
]}
GOOD = {"n": 1, "s": "x", "f": 0.5, "d": b"\x01"}


@pytest.mark.parametrize("change", [
    {"n": _Level.HIGH}, {"s": _Str("sub")}, {"n": 2**63}, {"n": True}, {"s": "\ud800"},
    {"i": 2**31}, {"f": 1e300}, {"d": Decimal("1.25")}, {"d": bytearray(b"\x02")},
    {"d": 5}, {"n": "1"},
], ids=repr)
def test_avro_values_c_does_not_take_give_the_python_result(
        change: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.serde import _Writer

    datum = {**GOOD, **change}
    compiled = _Writer(1, AVRO_RECORD)
    monkeypatch.setenv("LABSTREAM_CDC_SPEEDUPS", "0")
    python = _Writer(1, AVRO_RECORD)
    assert python.fast is None and compiled.fast is not None
    outcome = []
    for writer in (compiled, python):
        try:
            outcome.append(writer.write(datum, "t"))
        except SerializationError as exc:
            outcome.append(str(exc))
    assert outcome[0] == outcome[1]


def test_avro_missing_field_is_the_python_error() -> None:
    from connectors.serde import _Writer

    with pytest.raises(SerializationError, match="KeyError"):
        _Writer(1, AVRO_RECORD).write({"n": 1}, "t")


JSON_STRUCT = {"type": "struct", "optional": False, "fields": [
    {"field": "d", "type": "double", "optional": True},
    {"field": "s", "type": "string", "optional": True},
    {"field": "doc", "type": "struct", "optional": True, "fields": []},
]}


@pytest.mark.parametrize("value", [
    {"d": 1.5, "s": _Str("sub"), "doc": None}, {"d": 1.5, "s": "x", "doc": {"a": math.nan}},
    {"d": 1.5, "s": "x", "doc": {1: "non-str key"}}, {"d": Decimal("2"), "s": "x", "doc": None},
    {"d": 1e-9, "s": "\x01\\u00ab", "doc": {"k": [1, 2.5, None, True, "é\x1f"]}},
    {"d": 1.5, "s": "\udc80", "doc": None}, {"d": 1.5, "s": 7, "doc": {"t": (1, 2)}},
], ids=repr)
def test_json_values_c_does_not_take_give_the_python_result(value: dict[str, Any]) -> None:
    assert FAST is not None
    plan = speedups.json_plan(JSON_STRUCT)
    written = FAST.json(plan, b"", value)
    try:
        expected: Any = jsonwriter.compile_encoder(JSON_STRUCT)(value).encode() + b"}"
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        expected = type(exc)
    # either C wrote exactly the Python text, or it declined and Python decides
    assert written is None or written == expected


def test_switch_off_gives_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_CDC_SPEEDUPS", "0")
    assert speedups.load() is None


# --- pgoutput tuples and row values ---------------------------------------------------

tuple_values = st.lists(st.one_of(
    st.none(), st.just(UNCHANGED_TOAST), st.binary(max_size=12),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.binary(max_size=8).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
), max_size=12)


def _tuple_bytes(values: list[Any]) -> bytes:
    out = struct.pack(">H", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED_TOAST:
            out += b"u"
        else:
            raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
            out += (b"b" if isinstance(value, bytes) else b"t") + struct.pack(">I", len(raw)) + raw
    return out


@given(tuple_values, st.binary(max_size=3))
def test_pg_tuple_equals_the_python_decoder(values: list[Any], prefix: bytes) -> None:
    buf = prefix + _tuple_bytes(values) + b"tail"
    assert FAST is not None
    compiled = FAST.pg_tuple(buf, len(prefix), UNCHANGED_TOAST)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pgoutput, "_FAST", None)
        python = pgoutput._tuple(buf, len(prefix))
    assert compiled == python == (tuple(values), len(buf) - 4)
    assert [v is UNCHANGED_TOAST for v in compiled[0]] == [v is UNCHANGED_TOAST for v in values]


@pytest.mark.parametrize("buf", [
    b"\x00\x02n", b"\x00\x01t\x00\x00\x00\x09abc", b"\x00\x01x", b"\x00", b"\x00\x01b\x00\x00",
], ids=repr)
def test_malformed_tuples_are_left_to_python_which_names_the_fault(buf: bytes) -> None:
    assert FAST is not None and FAST.pg_tuple(buf, 0, UNCHANGED_TOAST) is None
    with pytest.raises((DecodeError, struct.error, IndexError)):
        pgoutput._tuple(buf, 0)


@given(avro_rows)
@settings(max_examples=100, deadline=None)
def test_row_values_equal_the_python_loop(row: Any) -> None:
    with_toast = (row[0], UNCHANGED_TOAST, *row[2:])
    for data in (row, with_toast):
        compiled = AVRO_TABLE.row_to_values(data)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(schema_module, "_FAST", None)
            python = AVRO_TABLE.row_to_values(data)
        # repr: same keys in the same order, same values and types (NaN == NaN here)
        assert repr(list(compiled.items())) == repr(list(python.items()))
        assert [type(v) for v in compiled.values()] == [type(v) for v in python.values()]


def test_a_value_that_fails_conversion_is_reported_by_python() -> None:
    bad = ("t", "1", "not-an-int", *([None] * (len(AVRO_TABLE.columns) - 3)))
    assert FAST is not None
    assert FAST.row_values(AVRO_TABLE._converters, bad, UNCHANGED_TOAST) is None
    with pytest.raises(ConversionError, match=r"all_types\.c2: cannot convert int4"):
        AVRO_TABLE.row_to_values(bad)
