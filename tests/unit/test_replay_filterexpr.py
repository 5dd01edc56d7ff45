"""The --filter language: grammar, semantics against a reference model, and safety."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.exceptions import FilterSyntaxError
from replay.filterexpr import compile_filter

EVENT = {
    "op": "u",
    "before": {"status": "running", "priority": 5},
    "after": {
        "kind": "hplc",
        "status": "completed",
        "priority": 7,
        "ratio": 0.5,
        "enabled": True,
        "note": None,
    },
    "source": {"table": "runs", "schema": "public", "lsn": 123456, "snapshot": "false"},
    "key": {"id": "run-1"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('after.kind == "hplc" and after.status == "completed"', True),
        ('op in ("c", "u")', True),
        ("op in ['c', 'd']", False),
        ('op not in ("c",)', True),
        ('source.table == "runs"', True),
        ('not source.table == "runs"', False),
        ('after.kind == "lc-ms" or (after.priority > 5 and op == "u")', True),
        ("after.priority >= 7 and after.priority <= 7", True),
        ("5 <= before.priority < after.priority", True),
        ("after.ratio < 1", True),
        ("after.note == null", True),
        ("after.note == None", True),
        ("after.missing == null and missing.deeper.still == null", True),
        ("after.missing > 3", False),  # ordering with null is false, not an error
        ('after.priority > "3"', False),  # across types: false
        ("after.enabled == true", True),
        ("after.enabled == 1", False),  # a bool is not a number here
        ("after.enabled", True),
        ("-1 < after.priority", True),
        ('"hp" in after.kind', True),  # substring for strings
        ('key.id == "run-1"', True),
        ("source.lsn > 100000", True),
    ],
)
def test_examples(text: str, expected: bool) -> None:
    assert compile_filter(text).matches(EVENT) is expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "after.__class__",
        "after.kind.__class__.__mro__",
        "().__class__.__bases__[0].__subclasses__()",
        "lambda: 1",
        "(lambda x: x)(1)",
        "after['kind']",
        "[x for x in after]",
        "after.kind if op else 1",
        "(x := 1)",
        "f'{after}'",
        "{'a': 1}",
        "{1, 2}",
        "after.priority + 1 > 2",
        "_hidden == 1",
        "b'bytes' == after.kind",
        "*after",
        "after.kind.upper()",
        "getattr(after, 'kind')",
    ],
)
def test_malicious_or_unsupported_input_is_rejected(text: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter(text)
    assert "position" in info.value.message
    assert "expected" in info.value.message


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ('after.kind = "x"', 12),
        ('after.kind == "x" and', 22),
        ("(op == 'c'", 1),
        ('after.kind == "unterminated', 15),
    ],
)
def test_parse_errors_say_where(text: str, position: int) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter(text)
    assert f"position {position}" in info.value.message
    assert "--filter" in info.value.message


def test_empty_and_oversized_filters() -> None:
    with pytest.raises(FilterSyntaxError):
        compile_filter("   ")
    with pytest.raises(FilterSyntaxError):
        compile_filter("op == 'c' or " * 1000 + "op == 'u'")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(FilterSyntaxError):
        compile_filter("(" * 300 + "1" + ")" * 300)


# -- property: random safe expressions evaluate like a reference model ----------------------

PATHS = {
    "op": ["op"],
    "after.kind": ["after", "kind"],
    "after.status": ["after", "status"],
    "after.priority": ["after", "priority"],
    "after.ratio": ["after", "ratio"],
    "after.enabled": ["after", "enabled"],
    "after.note": ["after", "note"],
    "after.nope": ["after", "nope"],
    "source.table": ["source", "table"],
}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10),
    st.floats(-10, 10, allow_nan=False, allow_infinity=False),
    st.sampled_from(["c", "u", "hplc", "runs", "completed", "", "é\"'\\"]),
)


@dataclass(frozen=True)
class Node:
    text: str
    kind: str
    parts: tuple[Any, ...]


def literal_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def operand_nodes() -> st.SearchStrategy[Node]:
    return st.one_of(
        st.sampled_from(sorted(PATHS)).map(lambda p: Node(p, "path", (p,))),
        scalars.map(lambda v: Node(literal_text(v), "literal", (v,))),
    )


@st.composite
def comparisons(draw: Any) -> Node:
    left = draw(operand_nodes())
    op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"]))
    if op in ("in", "not in"):
        items = draw(st.lists(scalars, max_size=3))
        text = (
            "(" + ", ".join(literal_text(v) for v in items) + ("," if len(items) == 1 else "") + ")"
        )
        right = Node(text, "tuple", tuple(items))
    else:
        right = draw(operand_nodes())
    return Node(f"{left.text} {op} {right.text}", "compare", (left, op, right))


expressions = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        inner.map(lambda n: Node(f"not ({n.text})", "not", (n,))),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: Node(f"({t[0].text}) {t[1]} ({t[2].text})", "bool", t)
        ),
    ),
    max_leaves=8,
)


def ref_value(node: Node, event: dict) -> Any:
    if node.kind == "literal":
        return node.parts[0]
    if node.kind == "tuple":
        return node.parts
    current: Any = event
    for step in PATHS[node.parts[0]]:
        current = current.get(step) if isinstance(current, dict) else None
    return current


def ref_equal(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def ref_compare(a: Any, op: str, b: Any) -> bool:
    if op == "==":
        return ref_equal(a, b)
    if op == "!=":
        return not ref_equal(a, b)
    if op in ("in", "not in"):
        inside = any(ref_equal(a, item) for item in b)
        return inside if op == "in" else not inside
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    strings = all(isinstance(x, str) for x in (a, b))
    if not (numbers or strings):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def reference(node: Node, event: dict) -> bool:
    if node.kind == "compare":
        left, op, right = node.parts
        return ref_compare(ref_value(left, event), op, ref_value(right, event))
    if node.kind == "not":
        return not reference(node.parts[0], event)
    left, op, right = node.parts
    if op == "and":
        return reference(left, event) and reference(right, event)
    return reference(left, event) or reference(right, event)


events = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["c", "u", "d"]),
        "after": st.fixed_dictionaries(
            {
                "kind": st.sampled_from(["hplc", "lc-ms"]),
                "status": st.sampled_from(["completed", ""]),
                "priority": st.integers(-10, 10),
                "ratio": st.floats(-10, 10, allow_nan=False),
                "enabled": st.booleans(),
                "note": st.none(),
            }
        ),
        "source": st.fixed_dictionaries({"table": st.sampled_from(["runs", "experiments"])}),
    }
)


@settings(max_examples=400, deadline=None)
@given(expressions, events)
def test_random_safe_expressions_match_the_reference(node: Node, event: dict) -> None:
    assert compile_filter(node.text).matches(event) is reference(node, event)


# -- the specialised closures give what the general ones give ---------------------------

_SPECIAL_FILTERS = [
    'after.kind == "hplc" and after.status == "completed" and op in ("c", "u")',
    'after.status != "failed" or op not in ("d", "r")',
    "after.error == null and before.error != None",
    'op == "u" and source.table in ["runs", "experiments"]',
    'after.kind == "1" or after.kind in ("True", "")',
    'a.b.c == "x" or a == "x" or a.b in ("x",)',
]
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(
    ["hplc", "completed", "c", "u", "d", "runs", "x", "1", "True", "", "failed"]),
    st.floats(allow_nan=False), st.lists(st.sampled_from(["x", "c"]), max_size=2))
_ROWS = st.one_of(st.none(), st.text(max_size=3), st.dictionaries(
    st.sampled_from(["kind", "status", "error", "table", "b", "c"]),
    st.one_of(_VALUES, st.dictionaries(st.sampled_from(["c"]), _VALUES, max_size=1)),
    max_size=5))
_ENVELOPES = st.dictionaries(st.sampled_from(["op", "after", "before", "source", "a"]),
                             st.one_of(_VALUES, _ROWS), max_size=5)


@given(envelope=_ENVELOPES, text=st.sampled_from(_SPECIAL_FILTERS))
@settings(max_examples=600, deadline=None)
def test_specialised_filters_agree_with_the_general_closures(envelope: dict, text: str) -> None:
    fast = compile_filter(text)
    general = compile_filter(text, specialize=False)
    assert fast.matches(envelope) == general.matches(envelope)
    assert fast.names == general.names


def test_specialised_filters_still_see_through_mappings_that_are_not_dicts() -> None:
    from types import MappingProxyType

    envelope = MappingProxyType({"after": MappingProxyType({"kind": "hplc", "status": "completed"}),
                                 "op": "u"})
    assert compile_filter(_SPECIAL_FILTERS[0]).matches(envelope)
    assert compile_filter('after.kind in ("lc",)').matches(envelope) is False
