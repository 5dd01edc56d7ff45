"""A schema-compiled JsonConverter writer for the connector's hot path.

`connectjson.dumps(connectjson.value_converter(schema)(value))` is the reference:
it marks every float, runs `json.dumps` over the whole document and then rewrites
the markers and escapes with regular expressions. `compile_encoder(schema)` gives
the same text, character for character (tests/unit/test_codec_jsonwriter.py checks
that on random rows), by writing each part straight from the Connect schema:
floats as Java prints them, bytes as base64, and everything else through the C
`json` encoder, with the upper-case `\\u00XX` fix-up only on a string that has one.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from json.encoder import encode_basestring  # the C encoder's string writer (UTF-8 kept)
from typing import Any

from connectors import connectjson

JsonEncoder = Callable[[Any], str]

_PLAIN = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_INT_TYPES = frozenset({"int8", "int16", "int32", "int64"})


def _fix_escapes(text: str) -> str:
    """Jackson writes control characters as `\\u00XX` with upper-case hex."""
    if "\\u00" not in text:
        return text
    return connectjson.upper_hex_escapes(text)


def _plain(value: Any) -> str:
    """Any value as `json.dumps` writes it (no float in it needs Java formatting)."""
    if value is None:
        return "null"
    return _fix_escapes(_PLAIN(value))


def _string(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is str:
        text = encode_basestring(value)
        return text if "\\u00" not in text else connectjson.upper_hex_escapes(text)
    return _plain(value)


def _integer(value: Any) -> str:
    if value is None:
        return "null"
    return int.__repr__(value) if type(value) is int else _plain(value)


def _boolean(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return _plain(value)


def _floating(formatter: Callable[[float], str]) -> JsonEncoder:
    def encode(value: Any) -> str:
        if value is None:
            return "null"
        if math.isnan(value):
            return '"NaN"'
        if math.isinf(value):
            return '"Infinity"' if value > 0 else '"-Infinity"'
        return formatter(value)

    return encode


def _bytes(value: Any) -> str:
    if value is None:
        return "null"
    return f'"{base64.b64encode(value).decode("ascii")}"'


_LEAVES: dict[str, JsonEncoder] = {
    "string": _string,
    "boolean": _boolean,
    "bytes": _bytes,
    "double": _floating(connectjson.java_double),
    "float": _floating(connectjson.java_float),
    **{name: _integer for name in _INT_TYPES},
}


def _needs_conversion(schema: dict[str, Any]) -> bool:
    """Does `value_converter` change values of this schema (else they are dumped as is)?"""
    kind = schema["type"]
    if kind in ("bytes", "double", "float"):
        return True
    if kind == "array":
        return _needs_conversion(schema["items"])
    if kind == "struct":
        return any(_needs_conversion(field) for field in schema["fields"])
    return False


def _struct(schema: dict[str, Any]) -> JsonEncoder:
    fields = [
        (_plain(field["field"]) + ":", field["field"], compile_encoder(field))
        for field in schema["fields"]
    ]

    def encode(value: Any) -> str:
        if value is None:
            return "null"
        get = value.get
        return "{" + ",".join([prefix + enc(get(name)) for prefix, name, enc in fields]) + "}"

    return encode


def _array(schema: dict[str, Any]) -> JsonEncoder:
    item = compile_encoder(schema["items"])

    def encode(value: Any) -> str:
        if value is None:
            return "null"
        return "[" + ",".join([item(element) for element in value]) + "]"

    return encode


def compile_encoder(schema: dict[str, Any]) -> JsonEncoder:
    """value of Connect `schema` -> its JsonConverter payload text."""
    kind = schema["type"]
    if kind == "struct" and _needs_conversion(schema):
        return _struct(schema)
    if kind == "array" and _needs_conversion(schema):
        return _array(schema)
    if kind in ("struct", "array"):
        return _plain  # dumped as is, like value_converter's identity
    return _LEAVES.get(kind, _plain)
