from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from streams_builders import change, full_reference, run_row

from streams.enrich import enrich
from streams.route import route
from streams.trigger import (
    SHARED_TENANT,
    TriggerRule,
    decide,
    fill_placeholders,
    job_key,
    job_request,
)

NOW = datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
PEAKS = json.dumps({"peaks": [{"rt_min": 1.2, "area": 100.0, "height": 7}]})


def _hplc_event(lsn: int = 1000, reference=None, offset: int | None = None):
    record = change("runs", "u", run_row("completed", result=PEAKS), run_row("running"),
                    lsn=lsn, offset=offset)
    return route(enrich(record, reference or full_reference()))[0]


def _rule(**overrides) -> dict:
    row = {"id": "hplc-report", "tenant_id": None, "enabled": True, "event_kind": "hplc.completed",
           "condition": "{}", "backend": "local", "image": None,
           "command": json.dumps(["report", "--run={payload.run_id}", "--n={payload.peak_count}"]),
           "env": '{"MODE": "fast"}', "timeout_s": 60, "max_concurrency": 2}
    row.update(overrides)
    return row


def test_matching_rule_fires_with_filled_command_and_job_key() -> None:
    [decision] = decide(_hplc_event(), [_rule()], now=NOW)
    assert (decision.outcome, decision.reason, decision.rule_id) == ("fired", "fired",
                                                                     "hplc-report")
    assert decision.command == ("report", "--run=run-1", "--n=1")
    assert decision.job_key == job_key("hplc-report", 'runs:{"id":"run-1"}:1000')
    assert decision.decided_at_ms == int(NOW.timestamp() * 1000)
    assert decision.origin is not None and decision.origin.topic == "lab.public.runs"


def test_job_key_is_the_same_for_a_redelivered_event_and_differs_per_change() -> None:
    first = decide(_hplc_event(offset=10), [_rule()], now=NOW)[0]
    redelivered = decide(_hplc_event(offset=99), [_rule()], now=NOW)[0]
    other_change = decide(_hplc_event(lsn=2000), [_rule()], now=NOW)[0]
    assert first.job_key == redelivered.job_key
    assert first.job_key != other_change.job_key
    assert job_key("a", "x") != job_key("b", "x")


def test_no_rule_for_kind_gives_one_skipped_decision() -> None:
    [decision] = decide(_hplc_event(), [_rule(event_kind="run.failed")], now=NOW)
    assert (decision.outcome, decision.reason, decision.rule_id) == (
        "skipped", "no_rule_for_kind", None)
    assert "hplc.completed" in decision.detail


def test_disabled_rule_is_skipped() -> None:
    [decision] = decide(_hplc_event(), [_rule(enabled=False)], now=NOW)
    assert (decision.outcome, decision.reason) == ("skipped", "rule_disabled")


def test_tenant_scoping() -> None:
    mine, other = _rule(id="mine", tenant_id="acme"), _rule(id="other", tenant_id="globex")
    decisions = {d.rule_id: d for d in decide(_hplc_event(), [mine, other], now=NOW)}
    assert decisions["mine"].outcome == "fired"
    assert decisions["other"].reason == "tenant_mismatch"
    assert "'globex'" in decisions["other"].detail and "'acme'" in decisions["other"].detail


def test_unknown_tenant_because_enrichment_incomplete_is_said() -> None:
    reference = full_reference()
    del reference.rows["experiments"]["exp-1"]
    event = _hplc_event(reference=reference)
    [scoped] = decide(event, [_rule(tenant_id="acme")], now=NOW)
    assert scoped.reason == "tenant_mismatch"
    assert "unknown" in scoped.detail and "experiment:exp-1" in scoped.detail
    [unscoped] = decide(event, [_rule()], now=NOW)
    assert unscoped.outcome == "fired"


def test_condition_false_names_field_and_values() -> None:
    rule = _rule(condition=json.dumps({"payload.peak_count": 3, "tenant_id": "acme"}))
    [decision] = decide(_hplc_event(), [rule], now=NOW)
    assert decision.reason == "condition_false"
    assert "payload.peak_count is 1, wanted 3" in decision.detail


def test_condition_absent_field_and_numeric_equality() -> None:
    absent = _rule(condition=json.dumps({"payload.nope": 1}))
    assert "absent" in decide(_hplc_event(), [absent], now=NOW)[0].detail
    numeric = _rule(condition=json.dumps({"payload.peaks.0.area": 100}))
    assert decide(_hplc_event(), [numeric], now=NOW)[0].outcome == "fired"


def test_placeholder_missing_is_skipped_with_the_placeholder_name() -> None:
    rule = _rule(command=json.dumps(["x", "{payload.nothing_here}"]))
    [decision] = decide(_hplc_event(), [rule], now=NOW)
    assert decision.reason == "placeholder_missing"
    assert "{payload.nothing_here}" in decision.detail


def test_placeholders_render_non_strings_as_json_and_leave_other_braces() -> None:
    document = {"payload": {"n": 2, "peaks": [{"a": 1}]}, "x": None}
    assert fill_placeholders("{payload.n}", document) == "2"
    assert fill_placeholders("{payload.peaks}", document) == '[{"a": 1}]'
    assert fill_placeholders('{"literal": true}', document) == '{"literal": true}'
    with pytest.raises(KeyError):
        fill_placeholders("{x}", document)  # null counts as missing


def test_invalid_rule_row_gives_failed_decision() -> None:
    [decision] = decide(_hplc_event(), [_rule(command="not json")], now=NOW)
    assert (decision.outcome, decision.reason) == ("failed", "rule_invalid")


def test_fired_decision_becomes_job_request_with_trace_context() -> None:
    rule = TriggerRule.from_row(_rule())
    [decision] = decide(_hplc_event(), [rule], now=NOW)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    request = job_request(decision, rule, traceparent=traceparent, tracestate=None)
    assert request.job_key == decision.job_key and request.tenant_id == "acme"
    assert request.command == ("report", "--run=run-1", "--n=1")
    assert request.env["MODE"] == "fast" and request.timeout_s == 60.0
    assert request.source_topic == "lab.public.runs"
    assert request.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert request.event_kind == "hplc.completed"


def test_lab_wide_event_job_gets_shared_tenant() -> None:
    from streams_builders import COMMIT_MS

    item = {"id": "inv-1", "name": "x", "lot": "L", "quantity": "1", "reorder_level": "5",
            "unit": "ml", "location": "", "expires_at": None}
    event = route(enrich(change("inventory_items", "c", item, ts_ms=COMMIT_MS),
                         full_reference()))[0]
    rule = TriggerRule.from_row(_rule(event_kind="inventory.low", command='["reorder"]'))
    [decision] = decide(event, [rule], now=NOW)
    assert job_request(decision, rule, traceparent=None, tracestate=None).tenant_id == SHARED_TENANT
