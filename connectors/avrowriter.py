"""A schema-compiled Avro binary writer for the connector's hot path.

fastavro resolves every union by validating the datum against each branch; our
schemas only ever use two-branch nullable unions, so the branch is simply "is it
None". `compile_writer(schema)` turns a parsed-JSON Avro schema into functions that
append to a bytearray: one generated straight-line function per record (nullable
unions, strings and small longs inlined), closures for the rest. It supports what the
connector's schemas use (primitives, records, arrays, nullable unions, named references,
Connect Decimal bytes) and raises `UnsupportedSchema` for anything else, so callers can
fall back to fastavro. Output is byte-for-byte what fastavro writes
(tests/unit/test_codec_avrowriter.py checks that).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors import pgtext

Encoder = Callable[[bytearray, Any], None]
_FLOAT = struct.Struct("<f").pack
_DOUBLE = struct.Struct("<d").pack
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class UnsupportedSchema(Exception):
    """The schema uses a construct this writer does not implement."""


# Two varint bytes (both with the continuation bit) for every 14-bit group: long values
# such as timestamps (8-9 bytes) take half the steps of a byte-at-a-time loop.
_PAIRS = [bytes(((group & 0x7F) | 0x80, (group >> 7) | 0x80)) for group in range(1 << 14)]


def _write_long(buf: bytearray, value: int) -> None:
    value = (value << 1) ^ (value >> 63)
    if value < 0x80:
        buf.append(value)
        return
    while value >= 0x4000:
        buf += _PAIRS[value & 0x3FFF]
        value >>= 14
    if value < 0x80:
        buf.append(value)
    else:
        buf.append((value & 0x7F) | 0x80)
        buf.append(value >> 7)


def _write_null(buf: bytearray, value: Any) -> None:
    if value is not None:
        raise TypeError(f"{value!r} is not null")


def _write_boolean(buf: bytearray, value: Any) -> None:
    if value is not True and value is not False:
        raise TypeError(f"{value!r} is not a boolean")
    buf.append(1 if value else 0)


def _write_int(buf: bytearray, value: Any) -> None:
    # bool is an int subclass; Avro wants a real integer
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{value!r} is not an int")
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"{value} does not fit an Avro int")
    _write_long(buf, value)


def _write_long_checked(buf: bytearray, value: Any) -> None:
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{value!r} is not a long")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{value} does not fit an Avro long")
    _write_long(buf, value)


def _write_float(buf: bytearray, value: Any) -> None:
    buf += _FLOAT(value)


def _write_double(buf: bytearray, value: Any) -> None:
    buf += _DOUBLE(value)


def _write_bytes(buf: bytearray, value: Any) -> None:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{type(value).__name__} is not bytes")
    _write_long(buf, len(value))
    buf += value


def _write_string(buf: bytearray, value: Any) -> None:
    data = value.encode()
    _write_long(buf, len(data))
    buf += data


def _decimal_writer(scale: int) -> Encoder:
    def write(buf: bytearray, value: Any) -> None:
        if isinstance(value, Decimal):
            value = pgtext.unscaled_bytes(value, scale)
        _write_bytes(buf, value)

    return write


_PRIMITIVE_WRITERS: dict[str, Encoder] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _write_int,
    "long": _write_long_checked,
    "float": _write_float,
    "double": _write_double,
    "bytes": _write_bytes,
    "string": _write_string,
}


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, Encoder] = {}

    def compile(self, schema: Any, namespace: str | None) -> Encoder:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVE_WRITERS[schema]
            return self._reference(schema, namespace)
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema["type"]
        if kind == "record":
            return self._record(schema, namespace)
        if kind == "array":
            return self._array(schema, namespace)
        if kind == "bytes" and schema.get("logicalType") == "decimal":
            return _decimal_writer(int(schema.get("scale", 0)))
        if kind in _PRIMITIVES and "logicalType" not in schema:
            return _PRIMITIVE_WRITERS[kind]
        raise UnsupportedSchema(f"Avro type {kind!r} (logicalType {schema.get('logicalType')})")

    def _reference(self, name: str, namespace: str | None) -> Encoder:
        candidates = [name] if "." in name else [f"{namespace}.{name}" if namespace else name]
        for full_name in candidates:
            if full_name in self.named:
                holder = self.named
                return lambda buf, value: holder[full_name](buf, value)
        raise UnsupportedSchema(f"unknown named type {name!r}")

    def _union(self, branches: list[Any], namespace: str | None) -> Encoder:
        if len(branches) != 2 or "null" not in branches:
            raise UnsupportedSchema("only two-branch nullable unions are supported")
        null_index = branches.index("null")
        other = self.compile(branches[1 - null_index], namespace)
        null_tag, value_tag = (0, 2) if null_index == 0 else (2, 0)

        def write(buf: bytearray, value: Any) -> None:
            if value is None:
                buf.append(null_tag)
            else:
                buf.append(value_tag)
                other(buf, value)

        return write

    def _record(self, schema: dict[str, Any], namespace: str | None) -> Encoder:
        name = schema["name"]
        record_namespace = schema.get("namespace", namespace)
        if "." in name:
            full_name = name
            record_namespace = name.rpartition(".")[0]
        else:
            full_name = f"{record_namespace}.{name}" if record_namespace else name
        # registered before the fields: recursive references resolve at call time
        self.named[full_name] = _write_null
        fields = [self._field(field, record_namespace) for field in schema["fields"]]
        write = _generate_record(full_name, fields)
        self.named[full_name] = write
        return write

    def _field(self, field: dict[str, Any], namespace: str | None) -> _Field:
        field_type = field["type"]
        nullable = (isinstance(field_type, list) and len(field_type) == 2
                    and "null" in field_type)
        if nullable:
            null_index = field_type.index("null")
            encoder = self.compile(field_type[1 - null_index], namespace)
            tags = (0, 2) if null_index == 0 else (2, 0)
        else:
            encoder = self.compile(field_type, namespace)
            tags = None
        return _Field(field["name"], encoder, "default" in field, field.get("default"), tags)

    def _array(self, schema: dict[str, Any], namespace: str | None) -> Encoder:
        item = self.compile(schema["items"], namespace)

        def write(buf: bytearray, value: Any) -> None:
            if value:
                _write_long(buf, len(value))
                for element in value:
                    item(buf, element)
            buf.append(0)

        return write


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    encoder: Encoder
    has_default: bool
    default: Any
    null_tags: tuple[int, int] | None  # (null branch, value branch) of a nullable union


# Inlined bodies for the commonest leaves (`v` is the value): a call fewer per field.
_INLINE: dict[Encoder, list[str]] = {
    _write_string: [
        "d = v.encode()",
        "n = len(d)",
        "if n < 64: buf.append(n << 1)",
        "else: _write_long(buf, n)",
        "buf += d",
    ],
    # zigzag of -64..63 is one byte; anything else (and every type check) goes the long way
    _write_long_checked: [
        "if type(v) is int and -64 <= v < 64: buf.append((v << 1) ^ (v >> 63))",
        "else: _write_long_checked(buf, v)",
    ],
}


def _generate_record(full_name: str, fields: list[_Field]) -> Encoder:
    """One straight-line function per record (no per-field loop, unions inlined)."""
    namespace: dict[str, Any] = {
        "_write_long": _write_long, "_write_long_checked": _write_long_checked,
    }
    lines = ["def write(buf, value):"]
    for index, field in enumerate(fields):
        namespace[f"e{index}"] = field.encoder
        namespace[f"d{index}"] = field.default
        fetch = (f"value.get({field.name!r}, d{index})" if field.has_default
                 else f"value[{field.name!r}]")
        body = _INLINE.get(field.encoder, [f"e{index}(buf, v)"])
        lines.append(f"    v = {fetch}")
        if field.null_tags is None:
            lines.extend("    " + line for line in body)
        else:
            null_tag, value_tag = field.null_tags
            lines.append(f"    if v is None: buf.append({null_tag})")
            lines.append("    else:")
            lines.append(f"        buf.append({value_tag})")
            lines.extend("        " + line for line in body)
    if not fields:
        lines.append("    pass")
    code = compile("\n".join(lines), f"<avro record {full_name}>", "exec")
    exec(code, namespace)  # the source is built above; field names enter only via repr()
    write: Encoder = namespace["write"]
    return write


def compile_writer(schema: Any) -> Encoder:
    """An encoder `(buf, datum) -> None` for `schema`; `UnsupportedSchema` if we can't."""
    return _Compiler().compile(schema, None)
