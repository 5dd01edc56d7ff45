"""The numeric plain-text fast path gives exactly what the Decimal path gives."""

from __future__ import annotations

import random

import pytest

from connectors import pgtext
from connectors.pgtypes import _fixed_decimal, _variable_scale_decimal


def _reference_variable(text: str):
    value = pgtext.parse_numeric(text)
    if value is None:
        return None
    value = pgtext.strip_trailing_zeros(value)
    scale = pgtext.decimal_scale(value)
    return {"scale": scale, "value": pgtext.unscaled_bytes(value, scale)}


def _texts(seed: int, count: int, scale: int | None) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        whole = str(rng.choice([0, 1, 9, 10, 127, 128, 255, 256, 10**18, rng.randrange(10**30)]))
        digits = scale if scale is not None else rng.randrange(0, 12)
        fraction = "".join(rng.choice("0123456789") for _ in range(digits))
        if scale is None and rng.random() < 0.3:
            fraction += "000"
        sign = rng.choice(["", "-"])
        out.append(f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}")
    return out


EDGES = ["0", "-0", "0.000", "-0.50", "100", "100.00", "NaN", "Infinity", "-Infinity",
         "0.000001", "-128", "-129", "127", "128", "32767.5", "-32768.25"]


@pytest.mark.parametrize("text", EDGES + _texts(1, 400, None))
def test_variable_scale_matches_the_decimal_path(text):
    assert _variable_scale_decimal(text) == _reference_variable(text)


@pytest.mark.parametrize("scale", [0, 2, 6])
def test_fixed_scale_matches_the_decimal_path(scale):
    convert = _fixed_decimal(scale)
    for text in [*_texts(scale, 400, scale), "NaN", "1.5", "-0.125"]:
        value = pgtext.parse_numeric(text)
        expected = None if value is None else pgtext.unscaled_bytes(value, scale)
        assert convert(text) == expected, text
