"""The chain audit, short (issue 12): a burst of rule-matching changes while the worker
is SIGKILLed at random moments, SIGTERMed once, and PostgreSQL and Kafka restart once;
every matched change ends with exactly one decision'd job in a terminal state, no
attempt ran twice, no job process is left. The long version: bench/chain_audit.py;
the counting: chain_audit.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chain_audit import WORKER_ENV, Audit
from streams_harness import WorkerHarness

pytestmark = pytest.mark.integration


@pytest.fixture
def harness(unique_name: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerHarness]:
    built = WorkerHarness(unique_name.replace("_", "-"), kafka_bootstrap, tmp_path,
                          launch_jobs=True, extra_env=WORKER_ENV)
    yield built
    built.stop_all()


def test_every_matched_change_ends_in_exactly_one_job_through_kills_and_restarts(
        harness: WorkerHarness, database_url: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    audit = Audit(harness, database_url, marks, events=120, kills=3, seed=12)
    try:
        result = audit.run()
    finally:
        audit.cleanup()
    print("\n".join(result.lines()))  # the counts, with -s
    report = "\n".join(result.lines()) + f"\nworker 0 log tail:\n{harness.log_text(0)[-2000:]}"
    assert result.disruptions.count("sigkill") == 3, report
    assert result.matched == 120, report
    assert result.decided == result.matched, report  # every change has its decision
    assert result.conflicting_decisions == 0, report  # repeated decisions name one job
    assert result.jobs == result.matched and result.terminal == result.matched, report
    assert result.succeeded == result.matched, report
    assert result.duplicate_attempts == [] and result.attempts_without_row == 0, report
    assert result.attempts >= result.matched, report  # every job's side effect ran
    assert result.orphans == [], report
    # stop grace 5 s (WORKER_ENV), plus Faust's own shutdown
    assert result.sigterm_exit_code == 0, report
    assert result.sigterm_exit_s is not None and result.sigterm_exit_s < 5 + 20, report
