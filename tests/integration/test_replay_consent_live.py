"""Replay's re-run consent against a real worker (subprocess) launching real jobs.

A completed HPLC run fires a rule and its job succeeds. The same record produced
again with the old, unsigned `labstream-replay-rerun-succeeded: true` (what any
producer can write), or with a signature made for another record, launches
nothing; signed with LABSTREAM_REPLAY_CONSENT_KEY for this record, the job runs
again, once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from streams_harness import TRACEPARENT, WorkerHarness, reference_rows, rule_row, run_row

from streams.replay_consent import REPLAY_ID_HEADER, RERUN_SUCCEEDED_HEADER, sign

pytestmark = pytest.mark.integration


@pytest.fixture
def harness(unique_name: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerHarness]:
    built = WorkerHarness(unique_name.replace("_", "-"), kafka_bootstrap, tmp_path,
                          launch_jobs=True)
    yield built
    built.stop_all()


def job_row(database_url: str, rule_id: str) -> tuple[str, int] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status, attempt FROM public.jobs WHERE rule_id = %s",
                           (rule_id,)).fetchone()
    return (row[0], row[1]) if row else None


def wait_job(database_url: str, rule_id: str, attempt: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if job_row(database_url, rule_id) == ("succeeded", attempt):
            return
        time.sleep(0.3)
    raise AssertionError(f"job of {rule_id} never succeeded at attempt {attempt}: "
                         f"{job_row(database_url, rule_id)}")


def test_a_forged_rerun_header_is_ignored_and_a_signed_one_honoured(
        harness: WorkerHarness, database_url: str) -> None:
    rule_id = f"consent-{harness.name}"[:60]
    reference_rows(harness)
    harness.send("trigger_rules", "c", rule_row(rule_id, "hplc.completed"))
    harness.flush()
    harness.start_worker()
    topic, key, value = harness.changes.encode("runs", "u", run_row("run-1", "completed"),
                                               run_row("run-1", "running"), lsn=777_001)
    assert key is not None and value is not None

    def produce(*headers: tuple[str, bytes]) -> None:
        harness.producer.produce(topic, key=key, value=value,
                                 headers=[("traceparent", TRACEPARENT.encode()), *headers])
        harness.flush()

    def decisions() -> list[dict[str, Any]]:
        return [d for d in harness.records("decisions") if d["rule_id"] == rule_id]

    try:
        produce()
        wait_job(database_url, rule_id, attempt=1)
        # what any producer can write, and a signature made for another record
        produce((REPLAY_ID_HEADER, b"rp-forged"), (RERUN_SUCCEEDED_HEADER, b"true"))
        secret = os.environ["LABSTREAM_REPLAY_CONSENT_KEY"].encode()
        moved = sign(secret, replay_id="rp-moved", record_key=key, record_value=b"other")
        produce((REPLAY_ID_HEADER, b"rp-moved"), (RERUN_SUCCEEDED_HEADER, moved))
        harness.wait_for("decisions", lambda _: len(decisions()) >= 3, timeout_s=60,
                         what="the decisions of the forged records")
        # the forged records' decisions carry no consent, and the job was not run again
        assert [d.get("rerun_succeeded") for d in decisions()[1:3]] == [None, None], decisions()
        assert job_row(database_url, rule_id) == ("succeeded", 1)

        signed = sign(secret, replay_id="rp-signed", record_key=key, record_value=value)
        produce((REPLAY_ID_HEADER, b"rp-signed"), (RERUN_SUCCEEDED_HEADER, signed))
        harness.wait_for("decisions", lambda _: len(decisions()) >= 4, timeout_s=60,
                         what="the decision of the signed record")
        assert decisions()[3].get("rerun_succeeded") is True, decisions()
        # records of one key are handled in order: the forged ones were queued before it,
        # so attempt 2 (not 3 or 4) means only the signed consent ran the job again
        wait_job(database_url, rule_id, attempt=2)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM public.jobs WHERE rule_id = %s", (rule_id,))
