"""The stream worker against the real stack, fed CDC-shaped Avro records directly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_signals import metrics_base, scrape, value
from streams_harness import TRACEPARENT, WorkerHarness, reference_rows, rule_row, run_row

from streams.deadletter import ERROR_HEADER, OFFSET_HEADER, TOPIC_HEADER

pytestmark = pytest.mark.integration


@pytest.fixture(params=["kafka", "faust"])
def harness(request: pytest.FixtureRequest, unique_name: str, kafka_bootstrap: str,
            tmp_path: Path) -> Iterator[WorkerHarness]:
    """Each behaviour on both engines: the batch loop (default) and the Faust agents."""
    built = WorkerHarness(f"{unique_name.replace('_', '-')}-{request.param}", kafka_bootstrap,
                          tmp_path, extra_env={"LABSTREAM_WORKER_ENGINE": request.param})
    yield built
    built.stop_all()


def _fired(decisions: list, rule_id: str) -> list:
    return [d for d in decisions if d["rule_id"] == rule_id and d["outcome"] == "fired"]


def test_worker_routes_decides_dead_letters_and_follows_rule_edits(
        harness: WorkerHarness) -> None:
    reference_rows(harness)
    rule = rule_row("report", "hplc.completed")
    harness.send("trigger_rules", "c", rule)
    harness.send_raw("runs", b"poison", b"\x00\x00\x00\x00\x01not avro at all")
    harness.send("runs", "u", run_row("run-1", "completed"), run_row("run-1", "running"),
                 lsn=1001)
    harness.send("runs", "u", run_row("run-2", "failed", error="pump"),
                 run_row("run-2", "running"), lsn=1002)
    harness.flush()
    harness.start_worker()

    [routed] = harness.wait_for("hplc.completed", lambda found: len(found) >= 1)
    assert routed["payload"]["run_id"] == "run-1"
    assert routed["payload"]["peaks"] == [{"rt_min": 2.5, "area": 10.0, "height": 1.0}]
    assert routed["origin"]["lsn"] == 1001 and routed["origin"]["table"] == "runs"
    assert routed["origin"]["topic"] == f"{harness.name}.public.runs"
    assert routed["enrichment"]["complete"] is True
    assert routed["enrichment"]["instrument"]["name"] == "HPLC #1"
    trace_id = TRACEPARENT.split("-")[1]
    assert routed["headers"]["traceparent"].decode().split("-")[1] == trace_id

    decisions = harness.wait_for("decisions", lambda found: len(found) >= 2)
    [fired] = _fired(decisions, "report")
    assert fired["command"] == ["true", "run-1"]
    no_rule = [d for d in decisions if d["reason"] == "no_rule_for_kind"]
    assert [d["event_kind"] for d in no_rule] == ["run.failed"]
    assert harness.wait_for("run.failed", lambda found: len(found) == 1)

    [letter] = harness.wait_for("dlq", lambda found: len(found) >= 1)
    assert letter["key"] == b"poison" and letter["value"] == b"\x00\x00\x00\x00\x01not avro at all"
    assert letter["headers"][TOPIC_HEADER] == f"{harness.name}.public.runs".encode()
    assert letter["headers"][OFFSET_HEADER].isdigit()
    assert b"cannot be decoded" in letter["headers"][ERROR_HEADER]
    assert letter["headers"]["x-origin"] == b"test"

    # a scientist disables the rule: the next event is skipped within seconds
    harness.send("trigger_rules", "u", dict(rule, enabled=False), rule)
    harness.flush()
    edited_at = time.monotonic()
    deadline = edited_at + 30
    reason = None
    attempt = 0
    while time.monotonic() < deadline and reason != "rule_disabled":
        attempt += 1
        run_id = f"run-edit-{attempt}"
        harness.send("runs", "u", run_row(run_id, "completed"), run_row(run_id, "running"))
        harness.flush()
        found = harness.wait_for(
            "decisions", lambda found, rid=run_id: any(
                d["event_id"].find(f'"{rid}"') >= 0 for d in found), timeout_s=20)
        reason = next(d["reason"] for d in found if f'"{run_id}"' in d["event_id"])
        if reason != "rule_disabled":
            time.sleep(0.5)
    assert reason == "rule_disabled", "the edited rule never took effect"
    assert time.monotonic() - edited_at < 15


def test_late_instrument_is_waited_for_then_marked_incomplete(harness: WorkerHarness) -> None:
    harness.send("tenants", "c", {"id": "acme", "name": "Acme", "tier": "standard"})
    harness.send("experiments", "c", {"id": "exp-1", "tenant_id": "acme", "kind": "hplc",
                                      "status": "running", "title": "t", "submitted_by": "ana",
                                      "protocol": "{}", "priority": 5})
    harness.send("runs", "u", run_row("run-9", "failed"), run_row("run-9", "running"))
    harness.flush()
    harness.start_worker()
    [routed] = harness.wait_for("run.failed", lambda found: len(found) == 1)
    assert routed["enrichment"]["complete"] is False
    assert routed["enrichment"]["missing"] == ["instrument:hplc-01"]


def test_documented_example_consumer_reads_routed_events(harness: WorkerHarness) -> None:
    import json
    import subprocess
    import sys

    from base.settings import REPO_ROOT

    reference_rows(harness)
    harness.send("runs", "u", run_row("run-7", "failed", error="lamp"),
                 run_row("run-7", "running"))
    harness.flush()
    harness.start_worker()
    harness.wait_for("run.failed", lambda found: len(found) == 1)
    output = subprocess.run(
        [sys.executable, str(REPO_ROOT / "docs/examples/consume_routed.py"),
         "--topic", harness.topic("run.failed"), "--max", "1", "--timeout", "30"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    [line] = output.splitlines()
    event = json.loads(line)
    assert event["kind"] == "run.failed" and event["payload"]["error"] == "lamp"
    assert event["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]


def test_leader_sweep_announces_a_lot_that_entered_the_window(
        unique_name: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    harness = WorkerHarness(unique_name.replace("_", "-"), kafka_bootstrap, tmp_path,
                            extra_env={"LABSTREAM_WORKER_LOT_SWEEP_INTERVAL_S": "2",
                                       "LABSTREAM_METRICS_PORT": "0"})
    try:
        now = datetime.now(UTC)
        expires = (now + timedelta(days=5)).strftime("%Y-%m-%d %H:%M:%S+00")
        item = {"id": "inv-1", "name": "buffer", "lot": "L1", "quantity": "50", "unit": "ml",
                "reorder_level": "5", "location": "", "expires_at": expires}
        # committed ten days ago: 15 days to expiry then, so the change itself is not routed
        harness.send("inventory_items", "c", item,
                     commit_ms=int((now - timedelta(days=10)).timestamp() * 1000))
        harness.flush()
        harness.start_worker()
        [routed] = harness.wait_for("inventory.lot_expiring", lambda found: len(found) >= 1,
                                    timeout_s=60)
        assert routed["payload"]["lot"] == "L1" and 4.9 < routed["payload"]["days_left"] <= 5
        # two more finished sweeps (the worker's /metrics counts them): not announced again
        sweeps = _sweeps(harness)
        deadline = time.monotonic() + 60
        while _sweeps(harness) < sweeps + 2:
            assert time.monotonic() < deadline, f"no two more sweeps:\n{harness.log_text(0)}"
            time.sleep(0.2)
        assert len(harness.records("inventory.lot_expiring")) == 1
    finally:
        harness.stop_all()


def _sweeps(harness: WorkerHarness) -> float:
    """labstream_lot_sweeps_total from the first worker's /metrics (port from its log)."""
    base = metrics_base(harness.log_text(0))
    assert base, f"no metrics endpoint in the worker log:\n{harness.log_text(0)}"
    found = value(scrape(base), "labstream_lot_sweeps_total")
    assert found is not None, "the worker's /metrics has no labstream_lot_sweeps_total"
    return found
