"""What Kafka Connect's JsonConverter (Jackson underneath) writes, byte for byte.

- Connect values to JSON values: `bytes` (so Decimal, Bits, bytea) as base64 strings,
  non-finite floats as the strings "NaN", "Infinity", "-Infinity" (Jackson's default
  QUOTE_NON_NUMERIC_NUMBERS).
- Finite floats as Java prints them (`Double.toString` / `Float.toString`): `1.0E10`,
  `1.0E-4`, `100.0`, shortest digits (JDK 19+ rules).
- Strings escaped as Jackson does: UTF-8 kept, `\\n`-style short escapes, other control
  characters as `\\u00XX` with upper-case hex.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Converter = Callable[[Any], Any]

# A float is carried through json.dumps as this marker string, then spliced back raw.
# "\x00" cannot occur in PostgreSQL text, so no real string can look like a marker.
_MARK = "\x00F"
_MARK_JSON = "\\u0000F"  # how json.dumps writes _MARK inside a string
_LOWER_HEX_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u00([0-9a-f]{2})")
_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def java_number_text(value: float, digits: str, exponent: int) -> str:
    """Java's Double/Float.toString layout for shortest `digits` * 10**`exponent`."""
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return f"{sign}0.0"
    point = len(digits) + exponent  # digits before the decimal point
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        whole = digits[:point].ljust(point, "0")
        fraction = digits[point:] or "0"
        return f"{sign}{whole}.{fraction}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{point - 1}"


def _shortest_digits(text: str) -> tuple[str, int]:
    _sign, digit_tuple, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    exponent += len(digit_tuple) - len(digits)
    return digits, exponent


def _two_digit_scientific(value: float) -> tuple[str, int]:
    """Java prints at least two significant digits in E notation, rounded from the exact
    binary value (Double.MIN_VALUE is 4.9E-324, not 5.0E-324)."""
    mantissa, _, exponent_text = f"{abs(value):.1e}".partition("e")
    return mantissa.replace(".", ""), int(exponent_text) - 1


def java_double(value: float) -> str:
    """Double.toString (JDK 19+: shortest digits that identify the double)."""
    if 1e-3 <= abs(value) < 1e7:
        # the hot path: both write the shortest round-trip digits in plain notation
        # here, so Python's repr is already Java's text (10x cheaper than rebuilding it)
        return repr(value)
    digits, exponent = _shortest_digits(repr(value))
    if len(digits) == 1 and not 1e-3 <= abs(value) < 1e7 and value != 0:
        digits, exponent = _two_digit_scientific(value)
    return java_number_text(value, digits, exponent)


def java_float(value: float) -> str:
    """Float.toString of a float32 value (shortest digits that round-trip in 32 bits)."""
    if value == 0:
        return java_number_text(value, "0", 0)
    target = struct.unpack("<f", struct.pack("<f", value))[0]
    text = repr(target)
    for precision in range(1, 10):
        candidate = f"{target:.{precision}g}"
        try:
            round_trips = struct.unpack("<f", struct.pack("<f", float(candidate)))[0] == target
        except OverflowError:  # rounded past the largest float32
            continue
        if round_trips:
            text = candidate
            break
    digits, exponent = _shortest_digits(text)
    if len(digits) == 1 and not 1e-3 <= abs(target) < 1e7:
        digits, exponent = _two_digit_scientific(target)
    return java_number_text(target, digits, exponent)


def _bytes_to_base64(value: Any) -> Any:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _marked(formatter: Callable[[float], str]) -> Converter:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return _MARK + formatter(value)

    return convert


def _identity(value: Any) -> Any:
    return value


_double = _marked(java_double)
_float = _marked(java_float)


def value_converter(schema: dict[str, Any]) -> Converter:
    """A function turning a value of Connect `schema` into its JsonConverter payload."""
    kind = schema["type"]
    if kind == "bytes":
        return _bytes_to_base64
    if kind == "double":
        return _double
    if kind == "float":
        return _float
    if kind == "array":
        item = value_converter(schema["items"])
        if item is _identity:
            return _identity
        return lambda value: None if value is None else [item(v) for v in value]
    if kind == "struct":
        fields = [(f["field"], value_converter(f)) for f in schema["fields"]]
        if all(conv is _identity for _, conv in fields):
            return _identity
        return lambda value: None if value is None else {
            name: conv(value.get(name)) for name, conv in fields
        }
    return _identity


def upper_hex_escapes(text: str) -> str:
    """`\\u00xx` escapes (as `json.dumps` writes them) with upper-case hex, as Jackson."""
    return _LOWER_HEX_ESCAPE.sub(lambda m: f"{m.group(1)}\\u00{m.group(2).upper()}", text)


def _splice_marked_floats(text: str) -> str:
    """`"\\u0000F<number>"` -> `<number>`: the marker and its quotes go, the text stays.

    A marker string holds only the number's characters (no quote, no backslash), so
    the closing quote is the first `"` after the marker.
    """
    parts = text.split('"' + _MARK_JSON)
    for index in range(1, len(parts)):
        part = parts[index]
        end = part.index('"')
        parts[index] = part[:end] + part[end + 1:]
    return "".join(parts)


def dumps(document: Any) -> str:
    """Compact JSON as Jackson writes it (after `value_converter` marked the floats)."""
    text = _DUMPS(document)
    if "\\u00" in text:
        if _MARK_JSON in text:
            text = _splice_marked_floats(text)
        if "\\u00" in text:
            text = upper_hex_escapes(text)
    return text
