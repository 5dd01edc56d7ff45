"""The simulator's seeded trigger rules fit the router and the trigger as written."""

from __future__ import annotations

import random

import pytest

from labstream.simulator import catalog
from streams.route import ROUTED_KINDS
from streams.trigger import fill_placeholders


@pytest.mark.parametrize("rule", catalog.DEFAULT_RULES, ids=lambda rule: rule.id)
def test_default_rule_listens_to_a_routed_kind_and_its_placeholders_resolve(
    rule: catalog.TriggerRule,
) -> None:
    assert rule.event_kind in ROUTED_KINDS
    # hplc.completed and run.failed both carry the run id in their payload
    document = {"kind": rule.event_kind, "payload": {"run_id": "run-x-000001"}}
    filled = [fill_placeholders(part, document) for part in rule.command]
    assert "run-x-000001" in filled
    assert not any("{" in part for part in filled)


def test_hplc_rule_runs_the_peak_summary_example_job() -> None:
    rule = next(r for r in catalog.DEFAULT_RULES if r.id == "hplc-peak-summary")
    assert rule.event_kind == "hplc.completed"
    assert rule.command[:3] == ["python", "-m", "streams.jobs.examples.hplc_peak_summary"]


def test_every_experiment_kind_has_an_instrument_and_typical_documents() -> None:
    rng = random.Random(0)
    instrument_kinds = {instrument.kind for instrument in catalog.INSTRUMENTS}
    for kind in catalog.EXPERIMENT_KINDS:
        assert catalog.INSTRUMENT_FOR[kind] in instrument_kinds
        assert catalog.protocol_for(kind, rng, 2)
        assert catalog.result_for(kind, rng)
    with pytest.raises(ValueError, match="centrifuge"):
        catalog.protocol_for("centrifuge", rng, 1)
