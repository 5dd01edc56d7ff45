"""The chain decides today exactly what it decided before the speed work (issue 15).

`chain_golden.json` was written by `chain_corpus.py` with the code before that work
(see its docstring); every field of every decision, routed event, enrichment, decoded
envelope and dry-run line over the corpus must be the same now.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chain_corpus import outcomes

GOLDEN = Path(__file__).with_name("chain_golden.json")


@pytest.fixture(scope="module")
def now_and_then() -> tuple[dict[str, Any], dict[str, Any]]:
    # through JSON, as the golden file went: tuples become lists on both sides
    return json.loads(json.dumps(outcomes())), json.loads(GOLDEN.read_text())


def test_the_corpus_covers_every_outcome(now_and_then: tuple[dict, dict]) -> None:
    _, then = now_and_then
    reasons = {d["reason"] for item in then["chain"] for ds in item["decisions"] for d in ds}
    assert reasons == {"fired", "tenant_mismatch", "rule_disabled", "condition_false",
                       "placeholder_missing", "rule_invalid"}
    kinds = {event["kind"] for item in then["chain"] for event in item["events"]}
    assert len(kinds) == 6
    assert any(item["unroutable"] for item in then["chain"])


def first_difference(mine: Any, golden: Any, path: str = "") -> str | None:
    if isinstance(mine, dict) and isinstance(golden, dict):
        for key in sorted(set(mine) | set(golden)):
            found = first_difference(mine.get(key, "<absent>"), golden.get(key, "<absent>"),
                                     f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(mine, list) and isinstance(golden, list) and len(mine) == len(golden):
        for index, (left, right) in enumerate(zip(mine, golden, strict=True)):
            found = first_difference(left, right, f"{path}.{index}")
            if found:
                return found
        return None
    return None if mine == golden else f"{path}: now {mine!r}, then {golden!r}"


def test_every_chain_step_is_unchanged(now_and_then: tuple[dict, dict]) -> None:
    now, then = now_and_then
    assert len(now["chain"]) == len(then["chain"])
    for mine, golden in zip(now["chain"], then["chain"], strict=True):
        assert mine == golden, first_difference(mine, golden)


def test_every_dry_run_outcome_is_unchanged(now_and_then: tuple[dict, dict]) -> None:
    now, then = now_and_then
    assert len(now["dry_run"]) == len(then["dry_run"])
    for mine, golden in zip(now["dry_run"], then["dry_run"], strict=True):
        assert mine == golden, first_difference(mine, golden)


def test_decide_many_gives_what_the_per_record_functions_gave(
        now_and_then: tuple[dict, dict]) -> None:
    from chain_corpus import ANNOUNCED, NOW, RULES, decoded_corpus, entry

    from streams.chain import decide_many

    _, then = now_and_then
    _, _, store, changes = decoded_corpus()
    golden = {(item["offset"], item["rules"]): item for item in then["chain"]}
    for rules_as, rules in (("parsed", store.rules()), ("rows", RULES)):
        results = decide_many([change for _, change in changes], store, rules, now=NOW,
                              announced_lots=dict(ANNOUNCED))
        assert len(results) == len(changes)
        for (offset, _), result in zip(changes, results, strict=True):
            mine = json.loads(json.dumps(entry(offset, rules_as, result.enriched,
                                               result.routed, result.decisions)))
            assert mine == golden[(offset, rules_as)], first_difference(
                mine, golden[(offset, rules_as)])


def test_decide_many_announces_a_lot_once_per_batch() -> None:
    from chain_corpus import NOW, decoded_corpus

    from streams.chain import decide_many

    _, _, store, changes = decoded_corpus()
    lot = next(change for _, change in changes
               if change.table == "inventory_items" and change.primary_key["id"] == "inv-2")
    announced: dict[str, str] = {}
    first, again = decide_many([lot, lot], store, store.rules(), now=NOW,
                               announced_lots=announced)
    assert [e.kind for e in first.routed.events] == ["inventory.lot_expiring"]
    assert again.routed.events == [] and "inv-2" in announced
