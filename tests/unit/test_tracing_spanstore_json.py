"""The span store's JSON columns: orjson where it can, the json module where it refuses."""

from __future__ import annotations

import json

from tracing.spanstore import _dumps


def test_what_orjson_writes_reads_back_as_the_json_module_wrote_it() -> None:
    value = {"s": "é ✓", "i": 2**63 - 1, "f": 0.1, "b": True, "t": ("a", "b"), "n": None}
    assert json.loads(_dumps(value)) == json.loads(json.dumps(value))


def test_what_orjson_refuses_goes_through_the_json_module() -> None:
    assert json.loads(_dumps({"k": 2**70})) == {"k": 2**70}  # beyond 64 bits
    assert json.loads(_dumps({1: "x"})) == {"1": "x"}  # a non-string key
    assert _dumps({"k": "\ud800"}) == '{"k": "\\ud800"}'  # a lone surrogate


def test_nan_is_null_and_bytes_their_str_and_nul_is_replaced() -> None:
    assert json.loads(_dumps({"r": float("nan")})) == {"r": None}
    assert json.loads(_dumps({"k": b"ab"})) == {"k": "b'ab'"}
    assert json.loads(_dumps({"k": "a\x00b"})) == {"k": "a\ufffdb"}
    assert json.loads(_dumps({"k": "a\\u0000b"})) == {"k": "a\\u0000b"}  # literal text stays
