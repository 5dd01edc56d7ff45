"""The one-dimensional array fast path parses exactly what the character loop parses."""

from __future__ import annotations

import random

import pytest

from connectors.pgtext import _parse_array_at, parse_array

ALPHABET = ['a', 'b', ' ', ',', '"', '\\', '{', '}', 'é', 'N', 'U', 'L', '1', '\t']


def _literal(items: list[str | None]) -> str:
    """What PostgreSQL's array_out writes for a text[] (quoting rules of arrayfuncs.c)."""
    out = []
    for item in items:
        if item is None:
            out.append("NULL")
        elif item == "" or item.upper() == "NULL" or any(c in item for c in ',"\\{} \t'):
            out.append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            out.append(item)
    return "{" + ",".join(out) + "}"


def _items(rng: random.Random) -> list[str | None]:
    return [None if rng.random() < 0.15 else
            rng.choice(["", "NULL", "null"]) if rng.random() < 0.1 else
            "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 8)))
            for _ in range(rng.randrange(0, 6))]


@pytest.mark.parametrize("seed", range(20))
def test_fast_path_equals_the_character_loop(seed):
    rng = random.Random(seed)
    for _ in range(100):
        items = _items(rng)
        text = _literal(items)
        slow, _ = _parse_array_at(text, 0, ",")
        assert parse_array(text) == slow == items, text
