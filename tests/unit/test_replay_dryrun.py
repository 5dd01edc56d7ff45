"""The dry run evaluates records with the worker's own enrich/route/trigger functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from replay.dryrun import DecisionView, RecordOutcome, decision_from_value, evaluate, origin_of
from replay.record import ReplayRecord
from streams.trigger import job_key

NOW = datetime(2026, 11, 25, 14, tzinfo=UTC)
RULE = {
    "id": "hplc-peak-summary",
    "tenant_id": None,
    "enabled": True,
    "event_kind": "hplc.completed",
    "condition": "{}",
    "backend": "local",
    "image": None,
    "command": '["summarize", "{payload.run_id}"]',
    "env": "{}",
    "timeout_s": 60,
    "max_concurrency": 2,
}


class Reference:
    rows = {
        ("experiments", "exp-1"): {"id": "exp-1", "tenant_id": "acme", "kind": "hplc"},
        ("experiments", "exp-2"): {"id": "exp-2", "tenant_id": "acme", "kind": "lc-ms"},
        ("instruments", "hplc-01"): {"id": "hplc-01", "kind": "hplc", "name": "HPLC 1"},
        ("tenants", "acme"): {"id": "acme", "name": "Acme"},
    }

    def get(self, table: str, key: str) -> Any:
        return self.rows.get((table, key))

    def samples_of(self, experiment_id: str) -> list:
        return []


def run_record(
    experiment: str = "exp-1", status: str = "completed", **overrides: Any
) -> ReplayRecord:
    row = {
        "id": "run-1",
        "experiment_id": experiment,
        "instrument_id": "hplc-01",
        "status": status,
        "result": '{"peaks": [{"rt_min": 1.5, "area": 10.0}]}',
    }
    value = {
        "op": "u",
        "before": dict(row, status="running"),
        "after": row,
        "source": {"table": "runs", "lsn": 777, "ts_ms": 1_700_000_000_000},
        "ts_ms": 1,
    }
    record = ReplayRecord(
        "lab.public.runs", 0, 42, 1, b"k", b"v", [], key={"id": "run-1"}, value=value
    )
    for name, item in overrides.items():
        setattr(record, name, item)
    return record


def test_completed_hplc_run_fires_the_rule_with_the_workers_job_key() -> None:
    outcome = evaluate(run_record(), Reference(), [RULE], now=NOW)
    assert outcome.status == "routed" and outcome.kinds == ["hplc.completed"]
    (decision,) = outcome.now
    assert decision.outcome == "fired" and decision.rule_id == "hplc-peak-summary"
    # the same key the trigger agent derives: rule + table + primary key + source LSN
    assert decision.job_key == job_key("hplc-peak-summary", 'runs:{"id":"run-1"}:777')
    assert decision.launch == "would launch"


def test_no_rule_and_not_routed_and_undecodable() -> None:
    (skipped,) = evaluate(run_record(), Reference(), [], now=NOW).now
    assert (skipped.outcome, skipped.reason) == ("skipped", "no_rule_for_kind")
    assert evaluate(run_record("exp-2"), Reference(), [RULE], now=NOW).status == "not_routed"
    assert (
        evaluate(run_record(status="running"), Reference(), [RULE], now=NOW).status == "not_routed"
    )
    broken = run_record(decode_error="SerializationError: unknown schema id", value=None)
    assert evaluate(broken, Reference(), [RULE], now=NOW).status == "undecodable"
    tombstone = run_record(value_bytes=None, value=None)
    assert evaluate(tombstone, Reference(), [RULE], now=NOW).status == "tombstone"


def test_then_and_now_difference_is_spelled_out() -> None:
    outcome = evaluate(run_record(), Reference(), [RULE], now=NOW)
    outcome.then = [DecisionView("skipped", "no_rule_for_kind", None)]
    assert outcome.changed
    line = outcome.line()
    assert (
        "then: skipped, no_rule_for_kind; now: fires rule hplc-peak-summary (would launch)" in line
    )
    outcome.then = [DecisionView("fired", "fired", "hplc-peak-summary")]
    assert not outcome.changed and "unchanged" in outcome.line()


def test_existing_jobs_change_what_execute_would_do() -> None:
    view = DecisionView("fired", "fired", "r", job_key="k", job_status="succeeded")
    assert "not launched again" in (view.launch or "")
    assert DecisionView("fired", "fired", "r", job_status="failed").launch.startswith(
        "would launch again"
    )  # type: ignore[union-attr]
    outcome = RecordOutcome(run_record(), "routed", now=[view])
    assert outcome.would_launch == []


def test_decision_records_are_read_with_their_origin() -> None:
    value = {
        "outcome": "skipped",
        "reason": "no_rule_for_kind",
        "rule_id": None,
        "origin": {"topic": "lab.public.runs", "partition": 0, "offset": 42},
    }
    assert origin_of(value) == "lab.public.runs/0/42"
    assert origin_of({"origin_topic": "t", "origin_partition": 1, "origin_offset": 2}) == "t/1/2"
    assert origin_of({"outcome": "fired"}) is None
    assert decision_from_value(value).text() == "skipped, no_rule_for_kind"


def test_the_settings_are_read_once_per_run_not_per_record(monkeypatch) -> None:
    """Reading WorkerSettings per record was 90 % of a dry run's time (4 ms a record)."""
    from replay.dryrun import route_settings

    settings = route_settings()

    def unexpected(*_args, **_kwargs):
        raise AssertionError("WorkerSettings read for a record")

    monkeypatch.setattr("streams.config.WorkerSettings", unexpected)
    for _ in range(3):
        outcome = evaluate(run_record(), Reference(), [RULE], now=NOW, settings=settings)
        assert outcome.status == "routed"


def test_progress_total_is_what_will_really_be_read() -> None:
    from replay.dryrun import _progress
    from replay.runner import planned_total
    from replay.selection import PartitionPlan, ScanStats, Selection

    stats = ScanStats(planned=100_000, scanned=700)
    assert _progress(stats, Selection(topics=("t",)), 700) == (700, 100_000)
    # --limit: the bar ends at the limit, not at the partition's end
    assert _progress(stats, Selection(topics=("t",), limit=1000), 650) == (650, 1000)
    plans = [PartitionPlan("t", 0, 0, 60_000), PartitionPlan("t", 1, 0, 40_000)]
    assert planned_total(plans, Selection(topics=("t",), limit=5)) == 5
    assert planned_total(plans, Selection(topics=("t",))) == 100_000


def test_the_paused_collector_resumes_with_nothing_young_and_nothing_frozen() -> None:
    import gc
    import weakref

    from replay.dryrun import _gc_paused

    class Node:
        pass

    assert gc.isenabled() and gc.get_freeze_count() == 0
    with _gc_paused():
        assert not gc.isenabled()
        kept = [{"n": [i]} for i in range(20_000)]
        cycle = Node()
        cycle.me = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(cycle)
        del cycle
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert gc.get_count()[0] < 1000  # the 40,000 new containers were not left young
    assert gone() is not None  # not collected yet: waiting in the oldest generation
    gc.collect()
    assert gone() is None  # a full collection still finds cycles made while paused
    assert len(kept) == 20_000
