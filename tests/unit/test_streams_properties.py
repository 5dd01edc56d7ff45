"""Property tests: crossing semantics, routed Avro round trip, job key stability."""

from __future__ import annotations

import io
from decimal import Decimal

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st
from streams_builders import EXPERIMENT, change, full_reference, run_row

from streams.enrich import enrich
from streams.route import route
from streams.schemas import routed_record, routed_schema
from streams.trigger import job_key

quantities = st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False)


@given(st.lists(quantities, min_size=1, max_size=30), quantities)
def test_inventory_low_fires_exactly_on_each_downward_crossing(levels, reorder) -> None:
    def item(quantity: Decimal) -> dict:
        return {"id": "inv", "name": "n", "lot": "L", "quantity": str(quantity),
                "reorder_level": str(reorder), "unit": "ml", "location": "", "expires_at": None}

    fired, previous = 0, None
    for lsn, quantity in enumerate(levels):
        op = "c" if previous is None else "u"
        record = change("inventory_items", op, item(quantity),
                        None if previous is None else item(previous), lsn=lsn)
        fired += sum(event.kind == "inventory.low" for event in route(enrich(record,
                                                                              full_reference())))
        previous = quantity
    expected = sum(
        1 for before, after in zip([None, *levels], levels, strict=False)
        if after < reorder and (before is None or before >= reorder))
    assert fired == expected


peak = st.fixed_dictionaries({
    "rt_min": st.floats(allow_nan=False, allow_infinity=False, width=32),
    "area": st.floats(min_value=0, max_value=1e12, allow_nan=False),
    "height": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))})


@settings(max_examples=60)
@given(st.lists(peak, max_size=8), st.text(max_size=20), st.integers(0, 2**62))
def test_hplc_event_round_trips_through_its_avro_schema(peaks, title, lsn) -> None:
    import json

    reference = full_reference()
    reference.rows["experiments"]["exp-1"] = dict(EXPERIMENT, title=title)
    record = change("runs", "u", run_row("completed", result=json.dumps({"peaks": peaks})),
                    run_row("running"), lsn=lsn)
    [event] = route(enrich(record, reference))
    schema = fastavro.parse_schema(routed_schema(event.kind))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, routed_record(event))
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, schema, None)
    assert decoded["origin"]["lsn"] == lsn
    assert decoded["enrichment"]["experiment"]["title"] == title
    assert len(decoded["payload"]["peaks"]) == len(peaks)
    for got, want in zip(decoded["payload"]["peaks"], peaks, strict=True):
        assert got["area"] == want["area"]
        assert got["height"] == want["height"]


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=80))
def test_job_key_is_a_pure_function_of_rule_and_event(rule_id, event_id) -> None:
    assert job_key(rule_id, event_id) == job_key(rule_id, event_id)
    assert job_key(rule_id, event_id).startswith(f"{rule_id}:")
    assert job_key(rule_id, event_id) != job_key(rule_id, event_id + "x")
