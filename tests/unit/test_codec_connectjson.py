"""JsonConverter fidelity: Java number formatting and Jackson string escaping."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import connectjson


# Expected strings are what Java's Double.toString / Float.toString print (JDK 19+).
@pytest.mark.parametrize(("value", "java"), [
    (1.0, "1.0"), (100.0, "100.0"), (-0.0, "-0.0"), (0.0, "0.0"), (123.456, "123.456"),
    (0.001, "0.001"), (0.0001, "1.0E-4"), (9999999.0, "9999999.0"), (1e7, "1.0E7"),
    (1e10, "1.0E10"), (1.5e-7, "1.5E-7"), (-2.5e300, "-2.5E300"),
    (1.7976931348623157e308, "1.7976931348623157E308"), (5e-324, "4.9E-324"),
    (0.1 + 0.2, "0.30000000000000004"), (12345678.9, "1.23456789E7"),
])
def test_java_double_to_string(value: float, java: str) -> None:
    assert connectjson.java_double(value) == java


@pytest.mark.parametrize(("value", "java"), [
    (1.0, "1.0"), (0.1, "0.1"), (3.4028234663852886e38, "3.4028235E38"),
    (1.401298464324817e-45, "1.4E-45"), (16777216.0, "1.6777216E7"), (-2.5, "-2.5"),
])
def test_java_float_to_string(value: float, java: str) -> None:
    assert connectjson.java_float(value) == java


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(deadline=None)
def test_java_double_text_parses_back_to_the_same_double(value: float) -> None:
    text = connectjson.java_double(value)
    assert float(text) == value
    assert "." in text  # Java always prints a fraction digit
    mantissa = text.split("E")[0].lstrip("-")
    assert "E" in text or 1e-3 <= abs(value) < 1e7 or value == 0
    assert not mantissa.startswith("0") or mantissa.startswith("0.")


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
@settings(deadline=None)
def test_java_float_text_round_trips_in_32_bits(value: float) -> None:
    import struct

    text = connectjson.java_float(value)
    assert struct.unpack("<f", struct.pack("<f", float(text)))[0] == value


def test_dumps_writes_numbers_raw_and_escapes_like_jackson() -> None:
    schema = {"type": "struct", "fields": [
        {"type": "double", "optional": True, "field": "d"},
        {"type": "float", "optional": True, "field": "f"},
        {"type": "string", "optional": True, "field": "s"},
        {"type": "bytes", "optional": True, "field": "b"},
        {"type": "array", "items": {"type": "double", "optional": True}, "optional": True,
         "field": "a"},
    ]}
    convert = connectjson.value_converter(schema)
    value = {"d": 1e10, "f": 0.5, "s": 'é\n\x1f"\\u001f', "b": b"\x00", "a": [math.nan, None, 2.0]}
    text = connectjson.dumps(convert(value))
    assert text == ('{"d":1.0E10,"f":0.5,"s":"é\\n\\u001F\\"\\\\u001f","b":"AA==",'
                    '"a":["NaN",null,2.0]}')
    assert json.loads(text)["s"] == 'é\n\x1f"\\u001f'
