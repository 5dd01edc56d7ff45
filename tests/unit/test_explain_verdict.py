"""The pure verdict of `labstream explain`: facts in, four ordered answers and a next step out."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import click

from explain.model import (
    CaptureSetup,
    CdcRecord,
    DeadLetter,
    DecisionRecord,
    Facts,
    JobFact,
    LogLine,
    RowState,
    WorkerProgress,
)
from explain.render import explanation_document, render_text
from explain.verdict import NO, NOT_REACHED, PENDING, UNKNOWN, YES, explain

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
EXPERIMENT = RowState("experiments", "exp-1", "submitted", "hplc", "acme", T0)
RUN = RowState("runs", "run-1", "completed", "hplc", "acme", T0 + timedelta(seconds=5))
EXP_RECORD = CdcRecord("lab.public.experiments", 0, 10, 1_000_040, "experiments", "exp-1", "c",
                       "submitted", 1_000_000, TRACE)
RUN_QUEUED = CdcRecord("lab.public.runs", 0, 20, 1_004_020, "runs", "run-1", "c", "queued",
                       1_004_000, TRACE)
RUN_DONE = CdcRecord("lab.public.runs", 0, 21, 1_005_035, "runs", "run-1", "u", "completed",
                     1_005_000, TRACE)
CAPTURE = CaptureSetup("labstream", "lab", "labstream", True,
                       frozenset({"public.experiments", "public.runs"}), False, "labstream",
                       True, True, 0, T0 + timedelta(minutes=1))
WORKER = WorkerProgress("labstream-worker", "lab.decisions",
                        {"lab.public.runs/0": 22, "lab.public.experiments/0": 11})
SUBMITTED_NO_RULE = DecisionRecord("lab.decisions", 0, 5, "skipped", "no_rule_for_kind",
                                   "no trigger rule has event_kind 'experiment.submitted'",
                                   "experiment.submitted", "e1", experiment_id="exp-1",
                                   origin="lab.public.experiments/0/10")
FIRED = DecisionRecord("lab.decisions", 0, 6, "fired", "fired", "rule peaks fired",
                       "hplc.completed", "e2", rule_id="peaks", job_key="peaks:abc",
                       experiment_id="exp-1", tenant_id="acme",
                       origin="lab.public.runs/0/21", job_id="job-1", trace_id=TRACE)
JOB_OK = JobFact("job-1", "peaks:abc", "peaks", "local", "succeeded", 1, 0, None, TRACE, "4242",
                 source="lab.public.runs/0/21", started_at=T0, finished_at=T0 + timedelta(
                     seconds=2), log_line_count=3,
                 last_lines=(LogLine(2, "stdout", "purity_pct=97.1", TRACE),))


def facts(**changes: object) -> Facts:
    base = Facts(query="exp-1", experiment=EXPERIMENT, runs=(RUN,), trace_ids=(TRACE,),
                 cdc_records=(EXP_RECORD, RUN_QUEUED, RUN_DONE),
                 decisions=(SUBMITTED_NO_RULE, FIRED), jobs=(JOB_OK,), capture=CAPTURE,
                 worker=WORKER)
    return replace(base, **changes)  # type: ignore[arg-type]


def statuses(result: object) -> list[str]:
    return [answer.status for answer in result.answers]  # type: ignore[attr-defined]


def test_a_complete_chain_is_four_yes_with_evidence():
    result = explain(facts())
    assert statuses(result) == [YES, YES, YES, YES]
    captured, triggered, started, succeeded = result.answers
    assert any("lab.public.runs/0/21" in line and "35 ms after commit" in line
               for line in captured.evidence)
    assert "peaks" in triggered.summary and "hplc.completed" in triggered.summary
    assert "ref 4242" in started.evidence[0]
    assert "exit code 0" in succeeded.evidence[0]
    assert result.first_problem is None and result.next_step.startswith("nothing to do")


def test_table_not_in_the_publication_says_alter_publication():
    capture = replace(CAPTURE, published_tables=frozenset({"public.experiments"}))
    result = explain(facts(cdc_records=(EXP_RECORD,), decisions=(SUBMITTED_NO_RULE,), jobs=(),
                           capture=capture))
    assert statuses(result) == [NO, NOT_REACHED, NOT_REACHED, NOT_REACHED]
    captured = result.answers[0]
    assert "runs run-1" in captured.summary and "not in publication labstream" in captured.summary
    assert result.next_step.startswith("ALTER PUBLICATION labstream ADD TABLE public.runs;")
    assert result.first_problem is captured


def test_earlier_states_in_the_topic_are_named_when_the_latest_is_missing():
    capture = replace(CAPTURE, slot_active=False, lag_bytes=5000)
    result = explain(facts(cdc_records=(EXP_RECORD, RUN_QUEUED), capture=capture))
    captured = result.answers[0]
    assert captured.status == NO
    assert "earlier states: queued" in captured.summary
    assert "is not running" in captured.summary and "5000 bytes behind" in captured.summary
    assert "labstream cdc run" in result.next_step


def test_connector_behind_is_pending_not_no():
    capture = replace(CAPTURE, lag_bytes=4096, last_acked_commit_at=T0)
    result = explain(facts(cdc_records=(EXP_RECORD, RUN_QUEUED), capture=capture))
    assert result.answers[0].status == PENDING
    assert "behind" in result.answers[0].summary


def test_missing_publication_and_missing_slot():
    result = explain(facts(cdc_records=(), capture=replace(CAPTURE, publication_exists=False)))
    assert "publication labstream does not exist" in result.answers[0].summary
    result = explain(facts(cdc_records=(), capture=replace(CAPTURE, slot_exists=False)))
    assert "slot labstream does not exist" in result.answers[0].summary


def test_no_rule_for_the_kind_names_the_rule_to_add_and_the_replay_command():
    no_rule = replace(FIRED, outcome="skipped", reason="no_rule_for_kind", rule_id=None,
                      job_key=None, job_id=None,
                      detail="no trigger rule has event_kind 'hplc.completed'")
    result = explain(facts(decisions=(SUBMITTED_NO_RULE, no_rule), jobs=()))
    assert statuses(result) == [YES, NO, NOT_REACHED, NOT_REACHED]
    triggered = result.answers[1]
    assert "hplc.completed" in triggered.summary and "no_rule_for_kind" in triggered.summary
    assert "INSERT INTO public.trigger_rules" in triggered.fix[0]
    assert "'acme'" in triggered.fix[0] and "'hplc.completed'" in triggered.fix[0]
    assert "labstream replay run --topic lab.public.runs --key run-1 --execute" in triggered.fix[1]


def test_condition_false_is_preferred_over_other_tenants_rules():
    other = replace(FIRED, outcome="skipped", reason="tenant_mismatch", rule_id="other",
                    job_key=None, job_id=None, detail="rule other is for tenant 'b'")
    condition = replace(FIRED, outcome="skipped", reason="condition_false", rule_id="mine",
                        job_key=None, job_id=None,
                        detail="rule mine: condition field payload.peak_count is 2, wanted 99")
    result = explain(facts(decisions=(other, condition), jobs=()))
    triggered = result.answers[1]
    assert triggered.status == NO and triggered.data["rule_id"] == "mine"
    assert "peak_count is 2, wanted 99" in triggered.summary
    assert "WHERE id = 'mine'" in triggered.fix[0]


def test_disabled_rule_fix_enables_it():
    disabled = replace(FIRED, outcome="skipped", reason="rule_disabled", job_key=None,
                       job_id=None, detail="rule peaks is disabled")
    result = explain(facts(decisions=(disabled,), jobs=()))
    assert "UPDATE public.trigger_rules SET enabled = true WHERE id = 'peaks';" in \
        result.next_step


def test_no_decision_and_no_worker_group_says_start_the_worker():
    worker = replace(WORKER, committed=None)
    result = explain(facts(decisions=(), jobs=(), worker=worker))
    triggered = result.answers[1]
    assert triggered.status == NO and "no committed offsets" in triggered.summary
    assert "labstream worker" in result.next_step


def test_no_decision_and_worker_behind_is_pending():
    worker = replace(WORKER, committed={"lab.public.runs/0": 21})
    result = explain(facts(decisions=(), jobs=(), worker=worker))
    assert result.answers[1].status == PENDING
    assert "committed offset 21" in result.answers[1].summary


def test_dead_lettered_record_is_reported_with_its_error():
    worker = replace(WORKER, dead_letters=(DeadLetter("lab.public.runs/0/21",
                                                      "UndecodableRecord: bad magic"),))
    result = explain(facts(decisions=(), jobs=(), worker=worker))
    assert result.answers[1].status == NO
    assert "dead-lettered" in result.answers[1].summary and "bad magic" in \
        result.answers[1].summary


def test_worker_state_unknown_is_unknown():
    result = explain(facts(decisions=(), jobs=(), worker=None))
    assert result.answers[1].status == UNKNOWN


def test_a_running_run_has_nothing_to_trigger_yet():
    running = replace(RUN, status="running")
    record = replace(RUN_DONE, status="running")
    result = explain(facts(runs=(running,), cdc_records=(EXP_RECORD, record), decisions=(),
                           jobs=()))
    assert statuses(result)[:2] == [YES, PENDING]
    assert "is 'running'" in result.answers[1].summary


def test_fired_without_a_job_runner():
    fired = replace(FIRED, job_id=None)
    result = explain(facts(decisions=(fired,), jobs=()))
    assert statuses(result) == [YES, YES, NO, NOT_REACHED]
    assert "--no-jobs" in result.next_step


def test_launch_failure_names_the_error_and_the_rerun():
    job = replace(JOB_OK, status="launch_failed", exit_code=None, started_at=None,
                  finished_at=None, error="FileNotFoundError: /no/such/program")
    result = explain(facts(jobs=(job,)))
    assert statuses(result) == [YES, YES, NO, NOT_REACHED]
    started = result.answers[2]
    assert "could not be launched" in started.summary and "/no/such/program" in started.summary
    assert any("labstream replay run --topic lab.public.runs --key run-1 --execute" in fix
               for fix in started.fix)


def test_non_zero_exit_shows_the_code_and_the_last_log_lines():
    lines = tuple(LogLine(i, "stderr", f"line {i}") for i in range(8))
    job = replace(JOB_OK, status="failed", exit_code=3, last_lines=lines, log_line_count=8)
    result = explain(facts(jobs=(job,)))
    assert statuses(result) == [YES, YES, YES, NO]
    succeeded = result.answers[3]
    assert "exited with code 3 after 2.0 s" in succeeded.summary
    assert any("line 7" in line for line in succeeded.evidence)
    assert not any("line 2" in line for line in succeeded.evidence)  # only the last five
    assert "job_log_lines" in result.next_step


def test_timed_out_and_still_running():
    result = explain(facts(jobs=(replace(JOB_OK, status="timed_out", exit_code=None),)))
    assert result.answers[3].status == NO and "timed out" in result.answers[3].summary
    result = explain(facts(jobs=(replace(JOB_OK, status="started", finished_at=None),)))
    assert result.answers[3].status == PENDING


def test_queued_job_is_pending():
    result = explain(facts(jobs=(replace(JOB_OK, status="queued", started_at=None),)))
    assert result.answers[2].status == PENDING


def test_json_document_is_stable_and_serializable():
    result = explain(facts(jobs=(replace(JOB_OK, status="failed", exit_code=3),)))
    document = explanation_document(result, facts())
    text = json.dumps(document, default=str)
    assert json.loads(text)["first_problem"] == "succeeded"
    assert document["version"] == 1 and document["ok"] is False
    assert [a["id"] for a in document["answers"]] == ["captured", "triggered", "started",
                                                      "succeeded"]
    assert set(document["answers"][0]) == {"id", "question", "status", "ok", "summary",
                                           "evidence", "fix", "data"}
    assert document["answers"][3]["data"]["jobs"][0]["exit_code"] == 3


def test_text_output_has_the_symbols_and_the_next_step():
    text = click.unstyle(render_text(explain(facts(decisions=(), jobs=(), worker=None)),
                                     facts()))
    assert "✔ 1. Did the change reach Kafka?" in text
    assert "? 2. Did a rule match" in text
    assert "· 3. Did the job start? not reached (answer 2 is unknown)" in text
    assert text.splitlines()[-1].startswith("next: ")


def test_a_table_left_out_by_the_include_list_names_the_setting():
    capture = replace(CAPTURE, filtered_out=frozenset({"public.runs"}))
    result = explain(facts(cdc_records=(EXP_RECORD,), capture=capture))
    assert result.answers[0].status == NO
    assert "leaves public.runs out" in result.answers[0].summary
    assert "LABSTREAM_CDC_TABLE_INCLUDE_LIST" in result.next_step


def test_kafka_not_answering_is_unknown_not_a_capture_failure():
    result = explain(facts(cdc_records=(), decisions=(), worker=None, kafka_checked=False))
    assert statuses(result) == [UNKNOWN, NOT_REACHED, NOT_REACHED, NOT_REACHED]
    assert "Kafka did not answer" in result.answers[0].summary
    assert "--bootstrap-servers" in result.next_step


def test_a_submission_with_no_rule_is_expected_and_waits_for_its_run():
    """No rule on experiment.submitted is normal: not "broken", and no {payload.run_id} fix."""
    running = (replace(RUN, status="running"), replace(RUN_QUEUED, status="running"))
    for runs, records in (((), ()), ((running[0],), (running[1],))):
        result = explain(facts(runs=runs, cdc_records=(EXP_RECORD, *records),
                               decisions=(SUBMITTED_NO_RULE,), jobs=()))
        triggered = result.answers[1]
        assert triggered.status == PENDING, triggered
        assert triggered.summary.startswith("expected, waiting for the run to complete")
        assert not triggered.fix and "payload.run_id" not in json.dumps(
            explanation_document(result, facts()))
        assert result.next_step.startswith("nothing to do yet") and "exp-1" in result.next_step


def test_a_completed_run_with_only_the_submission_decision_is_still_broken():
    result = explain(facts(decisions=(SUBMITTED_NO_RULE,), jobs=()))
    assert result.answers[1].status == NO
    assert "waiting" not in result.answers[1].summary


def test_the_rule_to_add_uses_a_field_its_kind_has():
    no_rule = replace(FIRED, outcome="skipped", reason="no_rule_for_kind", rule_id=None,
                      job_key=None, job_id=None, event_kind="run.failed")
    failed_run = replace(RUN, status="failed")
    failed_record = replace(RUN_DONE, status="failed")
    result = explain(facts(runs=(failed_run,), cdc_records=(EXP_RECORD, failed_record),
                           decisions=(no_rule,), jobs=()))
    assert '"--run", "{payload.run_id}"' in result.answers[1].fix[0]


def test_a_replayed_copy_reports_no_lag_after_commit():
    """The replayed record was produced 169 s after the commit: that is no connector lag."""
    copy = replace(RUN_DONE, offset=30, timestamp_ms=RUN_DONE.source_ts_ms + 169_493,
                   replay_of="lab.public.runs/0/21")
    result = explain(facts(cdc_records=(EXP_RECORD, RUN_QUEUED, copy)))
    captured = result.answers[0]
    assert captured.status == YES and "slowest 40 ms" in captured.summary
    assert "169493" not in json.dumps(explanation_document(result, facts()))
    assert any("a replayed copy of lab.public.runs/0/21" in line for line in captured.evidence)
