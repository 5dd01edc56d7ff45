from __future__ import annotations

import json

import fastavro
from streams_builders import (
    COMMIT_MS,
    EXPERIMENT,
    FakeReference,
    change,
    full_reference,
    run_row,
)

from streams import route as routing
from streams.enrich import enrich
from streams.route import lots_announced, route, route_explained
from streams.schemas import routed_record, routed_schema

PEAKS = json.dumps({"peaks": [{"rt_min": 1.2, "area": 100.5, "height": 7}]})


def _route(record, reference=None, **kwargs):
    return route(enrich(record, reference or full_reference()), **kwargs)


def test_hplc_run_reaching_completed_routes_with_peaks() -> None:
    events = _route(change("runs", "u", run_row("completed", result=PEAKS), run_row("running")))
    assert [event.kind for event in events] == ["hplc.completed"]
    payload = events[0].payload
    assert payload["peaks"] == [{"rt_min": 1.2, "area": 100.5, "height": 7.0}]
    assert payload["peak_count"] == 1 and payload["instrument_name"] == "HPLC #1"
    assert events[0].tenant_id == "acme"
    assert events[0].event_id == 'runs:{"id":"run-1"}:1000'


def test_update_of_already_completed_run_does_not_route_again() -> None:
    record = change("runs", "u", run_row("completed", error="note"), run_row("completed"))
    assert _route(record) == []


def test_completed_run_of_other_experiment_kind_is_not_hplc() -> None:
    reference = full_reference()
    reference.rows["experiments"]["exp-1"] = dict(EXPERIMENT, kind="synthesis")
    assert _route(change("runs", "u", run_row("completed"), run_row("running")), reference) == []


def test_completed_run_with_unknown_experiment_is_unroutable_and_says_why() -> None:
    reference = FakeReference({"instruments": {}})
    outcome = route_explained(enrich(change("runs", "u", run_row("completed"),
                                            run_row("running")), reference))
    assert outcome.events == []
    assert "experiment exp-1 is not known" in (outcome.unroutable or "")


def test_completed_run_with_unknown_experiment_on_hplc_instrument_routes_incomplete() -> None:
    reference = full_reference()
    del reference.rows["experiments"]["exp-1"]
    events = _route(change("runs", "u", run_row("completed"), run_row("running")), reference)
    assert [event.kind for event in events] == ["hplc.completed"]
    assert events[0].enrichment.complete is False
    assert events[0].enrichment.missing == ("experiment:exp-1",)


def test_failed_run_routes_run_failed_with_error() -> None:
    events = _route(change("runs", "u", run_row("failed", error="pump"), run_row("running")))
    assert [event.kind for event in events] == ["run.failed"]
    assert events[0].payload["error"] == "pump"


def test_experiment_created_submitted_routes() -> None:
    row = dict(EXPERIMENT, status="submitted", priority=7, protocol='{"a": 1}')
    events = _route(change("experiments", "c", row))
    assert [event.kind for event in events] == ["experiment.submitted"]
    assert events[0].payload["priority"] == 7 and events[0].payload["protocol"] == '{"a": 1}'


def test_snapshot_reads_and_deletes_never_route() -> None:
    row = dict(EXPERIMENT, status="submitted")
    assert _route(change("experiments", "r", row)) == []
    assert _route(change("experiments", "d", None, row)) == []


def _item(quantity: str, *, expires: str = "2026-06-01T00:00:00Z", lot: str = "L1") -> dict:
    return {"id": "inv-1", "name": "acetonitrile", "lot": lot, "quantity": quantity,
            "reorder_level": "10.000", "unit": "ml", "location": "shelf", "expires_at": expires}


def test_inventory_low_only_on_the_crossing() -> None:
    crossing = _route(change("inventory_items", "u", _item("9.5"), _item("10.000")))
    assert [event.kind for event in crossing] == ["inventory.low"]
    assert crossing[0].payload["quantity"] == 9.5 and crossing[0].payload["reorder_level"] == 10.0
    still_low = _route(change("inventory_items", "u", _item("8"), _item("9.5")))
    assert still_low == []
    at_level = _route(change("inventory_items", "u", _item("10"), _item("12")))
    assert at_level == []  # equal to the reorder level is not below it


def test_inventory_inserted_below_reorder_level_is_low() -> None:
    assert [e.kind for e in _route(change("inventory_items", "c", _item("1")))] == [
        "inventory.low"]


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def test_lot_expiring_within_seven_days_once_per_lot() -> None:
    soon = _iso(COMMIT_MS + 3 * 86_400_000)
    first = _route(change("inventory_items", "c", _item("50", expires=soon)))
    assert [event.kind for event in first] == ["inventory.lot_expiring"]
    assert first[0].payload["days_left"] == 3.0
    assert first[0].event_id == f"inventory_items:inv-1:lot:L1@{soon}"
    announced = lots_announced(first)
    again = _route(change("inventory_items", "u", _item("40", expires=soon),
                          _item("50", expires=soon), lsn=2000), announced_lots=announced)
    assert again == []
    new_lot = _route(change("inventory_items", "u", _item("40", expires=soon, lot="L2"),
                            _item("40", expires=soon), lsn=3000), announced_lots=announced)
    assert [event.kind for event in new_lot] == ["inventory.lot_expiring"]


def test_lot_outside_window_empty_or_expired_does_not_route() -> None:
    later = _iso(COMMIT_MS + 8 * 86_400_000)
    past = _iso(COMMIT_MS - 86_400_000)
    soon = _iso(COMMIT_MS + 86_400_000)
    assert _route(change("inventory_items", "c", _item("50", expires=later))) == []
    assert _route(change("inventory_items", "c", _item("50", expires=past))) == []
    empty = _route(change("inventory_items", "c", _item("0", expires=soon)))
    assert [event.kind for event in empty] == ["inventory.low"]


def _reading(**row) -> dict:
    base = {"id": 42, "sensor_id": "fridge-01-sensor", "instrument_id": "fridge-01",
            "celsius": None, "door_open": None, "read_at": "2025-11-24T16:00:00Z"}
    base.update(row)
    return base


def test_fridge_excursion_above_threshold_and_door_open() -> None:
    hot = _route(change("sensor_readings", "c", _reading(kind="temperature", celsius="8.01")))
    assert [(e.kind, e.payload["reason"]) for e in hot] == [("fridge.excursion", "temperature")]
    door = _route(change("sensor_readings", "c", _reading(kind="door", door_open=True)))
    assert [e.payload["reason"] for e in door] == ["door_open"]
    assert _route(change("sensor_readings", "c", _reading(kind="temperature",
                                                          celsius="8.00"))) == []
    assert _route(change("sensor_readings", "c", _reading(kind="door", door_open=False))) == []


def test_non_fridge_instrument_is_no_excursion_and_threshold_is_configurable() -> None:
    warm = change("sensor_readings", "c", _reading(kind="temperature", celsius="37",
                                                   instrument_id="hplc-01"))
    assert _route(warm) == []
    cool = change("sensor_readings", "c", _reading(kind="temperature", celsius="6"))
    assert len(_route(cool, settings=routing.RouteSettings(fridge_max_celsius=5))) == 1


def test_every_routed_event_matches_its_avro_schema() -> None:
    soon = _iso(COMMIT_MS + 86_400_000)
    records = [
        change("runs", "u", run_row("completed", result=PEAKS), run_row("running")),
        change("runs", "u", run_row("failed"), run_row("running")),
        change("experiments", "c", dict(EXPERIMENT, status="submitted", priority=5)),
        change("inventory_items", "c", _item("1", expires=soon)),
        change("sensor_readings", "c", _reading(kind="temperature", celsius="9.5")),
    ]
    kinds = set()
    for record in records:
        for event in _route(record):
            schema = fastavro.parse_schema(routed_schema(event.kind))
            assert fastavro.validate(routed_record(event), schema, raise_errors=True)
            kinds.add(event.kind)
    assert kinds == set(routing.ROUTED_KINDS)
