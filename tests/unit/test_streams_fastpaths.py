"""The hand-written fast paths of the chain give what the general code gives."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.records import key_text, lookup_path
from streams.route import _json_value
from streams.trigger import _fill, _template, fill_placeholders

KEY_VALUES = st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none(),
                       st.floats(allow_nan=False))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=6), KEY_VALUES, min_size=1, max_size=3))
def test_key_text_is_canonical_json(key: dict[str, Any]) -> None:
    assert key_text(key) == json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62, max_value=2**80)
    | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_json_values_parse_as_json_loads_parses_them(document: Any) -> None:
    text = json.dumps(document)
    assert _json_value(text) == json.loads(text)


def _outcome(parse: Any, text: str) -> str:
    try:
        return repr(parse(text))
    except Exception as exc:  # the same failure is what is compared
        return type(exc).__name__


def _before(text: str) -> Any:
    """`_json_value` before orjson: json.loads, None for what is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def test_what_orjson_refuses_or_reads_otherwise_is_parsed_by_json_loads() -> None:
    for text in ('{"a": NaN}', '[1e999, -Infinity]', str(2**80), f"[{-2**64}, 1]",
                 '"\\ud800"', "[" * 2000, "9" * 400, "not json", '{"a": 1} x'):
        assert _outcome(_json_value, text) == _outcome(_before, text), text
    assert _json_value({"already": "parsed"}) == {"already": "parsed"}


DOCUMENT = {"payload": {"run_id": "run-1", "n": 3, "x": None, "peaks": [{"a": 1.5}],
                        "obj": {"b": [1, 2]}}, "kind": "hplc.completed"}


def test_templates_split_once_fill_as_the_regular_expression_does() -> None:
    for template in ("plain", "{kind}", "--run={payload.run_id} n={payload.n}",
                     "{payload.peaks.0.a}{payload.obj}", "{payload.peaks}", "{{x}}", "{not valid",
                     "a{payload.missing}b", "{payload.x}", "{payload.peaks.5.a}", "{}"):
        pieces = _template(template)
        try:
            expected: Any = fill_placeholders(template, DOCUMENT)
        except KeyError as exc:
            expected = ("KeyError", exc.args)
        try:
            mine: Any = pieces if isinstance(pieces, str) else _fill(pieces, DOCUMENT)
        except KeyError as exc:
            mine = ("KeyError", exc.args)
        assert mine == expected, template
    assert lookup_path(DOCUMENT, "payload.peaks.0.a") == 1.5


def test_a_cached_enrichment_is_dropped_when_a_reference_row_changes() -> None:
    from streams_builders import change, run_row

    from streams.enrich import enrich
    from streams.reference import ReferenceStore

    store = ReferenceStore()
    record = change("runs", "u", run_row("completed"), run_row("running"))
    first = enrich(record, store).enrichment
    assert not first.complete and enrich(record, store).enrichment is first  # cached
    row = dict(record.envelope.after or {})
    store.put("experiments", {"id": row["experiment_id"], "tenant_id": "acme", "kind": "hplc"})
    second = enrich(record, store).enrichment
    assert second is not first and second.experiment is not None
    store.put("instruments", {"id": row["instrument_id"], "kind": "hplc", "name": "x"})
    assert enrich(record, store).enrichment.instrument is not None
