"""The simulated lab's decisions: valid transitions, rates, expiries, determinism."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from labstream.simulator import catalog
from labstream.simulator.actions import (
    Action,
    CancelExperiment,
    FinishRun,
    QueueExperiment,
    ReceiveLot,
    StartRun,
    SubmitExperiment,
)
from labstream.simulator.model import LabModel, SimulationConfig, tenants_for

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def drive(
    seed: int,
    steps: int,
    config: SimulationConfig | None = None,
    step_time: timedelta = timedelta(0),
) -> tuple[LabModel, list[Action]]:
    model = LabModel(random.Random(seed), config or SimulationConfig(run_token="t"))
    actions: list[Action] = list(model.initial_lots(NOW))
    now = NOW
    for _ in range(steps):
        action = model.next_action(now)
        model.apply(action)
        actions.append(action)
        now += step_time
    return model, actions


def test_same_seed_same_actions_and_different_seed_different_actions() -> None:
    _, first = drive(7, 500)
    _, again = drive(7, 500)
    _, other = drive(8, 500)
    assert first == again
    assert first != other


def test_sensor_ticks_in_between_do_not_change_the_actions_of_a_seed() -> None:
    _, plain = drive(7, 300)
    model = LabModel(random.Random(7), SimulationConfig(run_token="t"))
    interleaved: list[Action] = list(model.initial_lots(NOW))
    for step in range(300):
        for _ in range(step % 3):
            model.telemetry(NOW)
        action = model.next_action(NOW)
        model.apply(action)
        interleaved.append(action)
    assert interleaved == plain


def test_transitions_follow_the_experiment_lifecycle() -> None:
    status: dict[str, str] = {}
    kinds: dict[str, str] = {}
    running_on: dict[str, str] = {}  # instrument -> run
    instrument_kind = {i.id: i.kind for i in catalog.INSTRUMENTS}
    _, actions = drive(3, 3000)
    for action in actions:
        if isinstance(action, SubmitExperiment):
            assert action.experiment_id not in status
            status[action.experiment_id] = "submitted"
            kinds[action.experiment_id] = action.experiment_kind
        elif isinstance(action, QueueExperiment):
            assert status[action.experiment_id] == "submitted"
            status[action.experiment_id] = "queued"
        elif isinstance(action, CancelExperiment):
            assert status[action.experiment_id] in ("submitted", "queued")
            status[action.experiment_id] = "cancelled"
        elif isinstance(action, StartRun):
            assert status[action.experiment_id] == "queued"
            assert action.instrument_id not in running_on, "instrument already busy"
            expected = catalog.INSTRUMENT_FOR[kinds[action.experiment_id]]
            assert instrument_kind[action.instrument_id] == expected
            running_on[action.instrument_id] = action.run_id
            status[action.experiment_id] = "running"
        elif isinstance(action, FinishRun):
            assert running_on.pop(action.instrument_id) == action.run_id
            assert status[action.experiment_id] == "running"
            status[action.experiment_id] = "completed" if action.succeeded else "failed"
    finished = Counter(s for s in status.values())
    assert finished["completed"] > 100 and finished["failed"] > 0 and finished["cancelled"] > 0


def test_every_kind_gets_a_typical_protocol_and_result() -> None:
    _, actions = drive(11, 3000)
    submitted = [a for a in actions if isinstance(a, SubmitExperiment)]
    assert {a.experiment_kind for a in submitted} == set(catalog.EXPERIMENT_KINDS)
    hplc = next(a for a in submitted if a.experiment_kind == "hplc")
    assert {"column", "flow_ml_min", "gradient", "wavelength_nm"} <= set(hplc.protocol)
    assert 1 <= len(hplc.samples) <= 4 and all(s.volume_ul > 0 for s in hplc.samples)
    finished = [a for a in actions if isinstance(a, FinishRun) and a.succeeded]
    hplc_ids = {a.experiment_id for a in submitted if a.experiment_kind == "hplc"}
    hplc_results = [a.result for a in finished if a.experiment_id in hplc_ids]
    assert hplc_results
    for result in hplc_results:
        assert result is not None
        peaks = result["peaks"]
        assert 2 <= len(peaks) <= 6
        assert [p["rt_min"] for p in peaks] == sorted(p["rt_min"] for p in peaks)
        assert all(set(p) == {"rt_min", "area", "height"} and p["area"] > 0 for p in peaks)


def test_failure_rate_matches_configuration() -> None:
    config = SimulationConfig(run_token="t", failure_rate=0.2)
    _, actions = drive(5, 12000, config)
    finishes = [a for a in actions if isinstance(a, FinishRun)]
    failed = [a for a in finishes if not a.succeeded]
    assert len(finishes) > 1500
    assert 0.16 < len(failed) / len(finishes) < 0.24
    assert all(a.error and a.result is None for a in failed)


def test_some_received_lots_expire_within_seven_days() -> None:
    config = SimulationConfig(run_token="t", short_expiry_probability=0.25)
    model = LabModel(random.Random(9), config)
    shelf_lives = [lot.expires_at - NOW for lot in model.initial_lots(NOW)]
    now = NOW
    for _ in range(12000):
        action = model.next_action(now)
        model.apply(action)
        if isinstance(action, ReceiveLot):
            shelf_lives.append(action.expires_at - now)
        now += timedelta(minutes=3)
    assert len(shelf_lives) > 40
    assert all(life > timedelta(0) for life in shelf_lives)
    short = [life for life in shelf_lives if life <= timedelta(days=7)]
    assert 0.1 < len(short) / len(shelf_lives) < 0.45
    assert all(life >= timedelta(days=30) for life in shelf_lives if life > timedelta(days=7))


def test_reorders_happen_only_when_stock_is_low_and_expired_lots_are_not_used() -> None:
    model = LabModel(random.Random(2), SimulationConfig(run_token="t"))
    model.initial_lots(NOW)
    now = NOW
    received = 0
    for _ in range(15000):
        action = model.next_action(now)
        if isinstance(action, ReceiveLot):
            reagent = model.reagents[action.name]
            usable = sum(lot.quantity for lot in model._usable_lots(action.name, now))
            assert usable < reagent.reorder_level
            received += 1
        if isinstance(action, StartRun):
            for use in action.consumed:
                lot = model.lots[use.item_id]
                assert lot.expires_at > now and lot.quantity >= use.amount
        model.apply(action)
        now += timedelta(minutes=1)
    assert received > 10
    assert all(lot.quantity >= Decimal(0) for lot in model.lots.values())


def test_ids_carry_the_run_token_and_never_repeat() -> None:
    _, actions = drive(4, 2000, SimulationConfig(run_token="abc12"))
    ids = [a.experiment_id for a in actions if isinstance(a, SubmitExperiment)]
    ids += [a.run_id for a in actions if isinstance(a, StartRun)]
    assert len(ids) == len(set(ids))
    assert all("-abc12-" in i for i in ids)
    assert all(i.startswith("exp-") for i in ids if i.startswith("exp"))


def test_tenant_count_is_honoured_beyond_the_catalog() -> None:
    tenants = tenants_for(12)
    assert len({t.id for t in tenants}) == 12
    _, actions = drive(1, 800, SimulationConfig(run_token="t", tenants=2))
    used = {a.tenant_id for a in actions if isinstance(a, SubmitExperiment)}
    assert used == {t.id for t in catalog.TENANTS[:2]}
