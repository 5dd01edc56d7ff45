"""Facts -> the four answers an operator wants, in order, each with evidence and a fix.

`explain(facts)` is pure. The questions, in chain order:

1. `captured`  - did the change reach Kafka?
2. `triggered` - did a rule match and the trigger fire (or why not)?
3. `started`   - did the job start?
4. `succeeded` - did it succeed?

Each answer is `yes`, `no`, `pending` (not yet: the chain may still get there),
`unknown` (a fact could not be read) or `not_reached` (an earlier answer is not
yes). `Explanation.next_step` is the fix of the first answer that is not yes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from explain.model import CdcRecord, DecisionRecord, Facts, JobFact, RowState

YES, NO, PENDING, UNKNOWN, NOT_REACHED = "yes", "no", "pending", "unknown", "not_reached"
QUESTIONS = {
    "captured": "Did the change reach Kafka?",
    "triggered": "Did a rule match and the trigger fire?",
    "started": "Did the job start?",
    "succeeded": "Did it succeed?",
}
# which skip reason explains "no rule fired" best: the rules closest to firing first
_REASON_ORDER = ("submit_failed", "rule_invalid", "condition_false", "placeholder_missing",
                 "rule_disabled", "enrichment_incomplete", "tenant_mismatch", "no_rule_for_kind")
_LAST_LINES = 5


@dataclass(frozen=True)
class Answer:
    id: str
    status: str
    summary: str
    evidence: tuple[str, ...] = ()
    fix: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        return QUESTIONS[self.id]


@dataclass(frozen=True)
class Explanation:
    query: str
    experiment_id: str | None
    trace_ids: tuple[str, ...]
    answers: tuple[Answer, ...]
    notes: tuple[str, ...] = ()

    @property
    def first_problem(self) -> Answer | None:
        return next((a for a in self.answers if a.status != YES), None)

    @property
    def next_step(self) -> str:
        problem = self.first_problem
        if problem is None:
            return "nothing to do: the change reached Kafka, a rule fired and every job succeeded"
        if problem.fix:
            return problem.fix[0]
        if problem.data.get("reason") == "waiting_for_run":
            again = f"labstream explain {self.experiment_id or self.query}"
            return ("nothing to do yet: a rule fires when the experiment's run completes or "
                    f"fails; ask again then (`{again}`)")
        return problem.summary


def explain(facts: Facts) -> Explanation:
    answers = [answer_captured(facts)]
    for answer_id, compute in (("triggered", answer_triggered), ("started", answer_started),
                               ("succeeded", answer_succeeded)):
        blocker = next((a for a in answers if a.status != YES), None)
        if blocker is None:
            answers.append(compute(facts))
        else:
            number = list(QUESTIONS).index(blocker.id) + 1
            answers.append(Answer(answer_id, NOT_REACHED, f"not reached (answer {number} is "
                                  f"{blocker.status.replace('_', ' ')})"))
    return Explanation(
        query=facts.query,
        experiment_id=facts.experiment.id if facts.experiment else None,
        trace_ids=facts.trace_ids,
        answers=tuple(answers),
        notes=facts.notes,
    )


def replay_command(record: CdcRecord) -> str:
    return f"labstream replay run --topic {record.topic} --key {record.key} --execute"


# -- 1. captured --------------------------------------------------------------------------


def records_of(facts: Facts, row: RowState) -> list[CdcRecord]:
    return sorted((r for r in facts.cdc_records if r.table == row.table and r.key == row.id),
                  key=lambda r: (r.timestamp_ms, r.offset))


def current_record(facts: Facts, row: RowState) -> CdcRecord | None:
    """The newest record of `row` that shows its current status (None: not captured yet)."""
    matching = [r for r in records_of(facts, row) if r.status == row.status and r.op != "d"]
    return matching[-1] if matching else None


def _describe_record(record: CdcRecord) -> str:
    delay = f", {record.delay_ms} ms after commit" if record.delay_ms is not None else ""
    if record.replay_of is not None:
        delay = f", a replayed copy of {record.replay_of}"
    trace = f", trace {record.trace_id}" if record.trace_id else ", no traceparent header"
    return (f"{record.table} {record.key} op={record.op} status={record.status} -> "
            f"{record.coordinates}{delay}{trace}")


def answer_captured(facts: Facts) -> Answer:
    rows = facts.rows
    if not rows:
        if facts.cdc_records:
            return Answer("captured", YES, f"{len(facts.cdc_records)} change record(s) carry "
                          "this trace", tuple(_describe_record(r) for r in facts.cdc_records))
        return Answer("captured", UNKNOWN, "no lab row and no change record to check")
    if not facts.kafka_checked:
        return Answer("captured", UNKNOWN, "Kafka did not answer: the change records could not "
                      "be looked for", fix=("start Kafka (`labstream stack status`) or pass "
                                            "--bootstrap-servers",))
    found = {row: current_record(facts, row) for row in rows}
    evidence = tuple(_describe_record(rec) for rec in found.values() if rec is not None)
    data = {"records": [rec.coordinates for rec in found.values() if rec is not None]}
    missing = [row for row, rec in found.items() if rec is None]
    if not missing:
        delays = [rec.delay_ms for rec in found.values() if rec and rec.delay_ms is not None]
        worst = f"; slowest {max(delays)} ms after commit" if delays else ""
        return Answer("captured", YES, f"all {len(rows)} change(s) are in Kafka{worst}",
                      evidence, data=data)
    return _not_captured(facts, missing[0], evidence, data)


def _not_captured(facts: Facts, row: RowState, evidence: tuple[str, ...],
                  data: dict[str, Any]) -> Answer:
    capture = facts.capture
    what = f"the change of {row.table} {row.id} to status {row.status!r}"
    topic = f"{capture.topic_prefix}.public.{row.table}" if capture else f"*.public.{row.table}"
    older = [r.status for r in records_of(facts, row)]
    seen = f" (the topic has its earlier states: {', '.join(map(str, older))})" if older else ""
    status, (why, fixes) = NO, _capture_problem(facts, row)
    if why.startswith("the connector is running but behind"):
        status = PENDING
    return Answer("captured", status, f"{what} is not in {topic}{seen}: {why}",
                  evidence, fixes, data={**data, "missing": f"{row.table}/{row.id}"})


def _capture_problem(facts: Facts, row: RowState) -> tuple[str, tuple[str, ...]]:
    capture = facts.capture
    status_cmd = "labstream cdc status"
    if capture is None:
        return "the connector's state could not be read", (f"run `{status_cmd}`",)
    table = f"public.{row.table}"
    if not capture.publication_exists:
        return (f"publication {capture.publication} does not exist (the connector creates it "
                "when it starts)", (f"start the connector: `labstream cdc run`, then "
                                     f"`{status_cmd}`",))
    if not capture.publishes(row.table):
        return (f"table {table} is not in publication {capture.publication}, so PostgreSQL "
                "never sends its changes to the connector", (
                    f"ALTER PUBLICATION {capture.publication} ADD TABLE {table};  (with "
                    "LABSTREAM_CDC_PUBLICATION_AUTOCREATE_MODE=filtered, add the table to "
                    "LABSTREAM_CDC_TABLE_INCLUDE_LIST instead: the connector resets the "
                    "publication when it starts)",
                    "changes committed while the table was not published are never sent: "
                    f"write the change again once it is published (`{status_cmd}` shows the "
                    "connector)",
                ))
    if table in capture.filtered_out:
        return (f"connector {capture.connector} leaves {table} out "
                "(LABSTREAM_CDC_TABLE_INCLUDE_LIST / _EXCLUDE_LIST)", (
                    f"capture it: add {table} to LABSTREAM_CDC_TABLE_INCLUDE_LIST (or drop it "
                    "from _EXCLUDE_LIST) and restart `labstream cdc run`",
                    "changes committed before that are never sent: write the change again",
                ))
    if not capture.slot_exists:
        return (f"replication slot {capture.slot} does not exist: connector {capture.connector} "
                "has not started (or was reset)", (f"start it: `labstream cdc run`, then "
                                                    f"`{status_cmd}`",))
    lag = f"{capture.lag_bytes} bytes behind" if capture.lag_bytes is not None else "lag unknown"
    if not capture.slot_active:
        return (f"connector {capture.connector} is not running (slot {capture.slot} inactive, "
                f"{lag})", (f"start it: `labstream cdc run`; `{status_cmd}` shows the slot",))
    behind = capture.last_acked_commit_at is None or (
        row.updated_at is not None and row.updated_at > capture.last_acked_commit_at)
    if capture.lag_bytes and behind:
        return (f"the connector is running but behind ({lag}; last acknowledged commit "
                f"{capture.last_acked_commit_at})", (f"wait, and watch `{status_cmd}`",))
    return (f"connector {capture.connector} is running and caught up, yet no record of it was "
            f"found under prefix {capture.topic_prefix}", (
                f"check the topic prefix (`labstream explain --topic-prefix ...`) and "
                f"`{status_cmd}`; `labstream replay ls --topic {capture.topic_prefix}.public."
                f"{row.table} --key {row.id}` lists what the topic holds",))


# -- 2. triggered -------------------------------------------------------------------------


def expected_event(facts: Facts) -> tuple[str | None, RowState | None, str]:
    """(routed kind, row) the current lab state should have produced, or (None, row, why)."""
    experiment = facts.experiment
    kind = experiment.kind if experiment else None
    for run in sorted(facts.runs, key=lambda r: (r.updated_at is None, r.updated_at),
                      reverse=True):
        if run.status == "failed":
            return "run.failed", run, ""
        if run.status == "completed":
            if (run.kind or kind) == "hplc":
                return "hplc.completed", run, ""
            return None, run, (f"run {run.id} completed, but only HPLC completions become "
                               f"events (experiment kind {run.kind or kind!r})")
        return None, run, (f"run {run.id} is {run.status!r}: a rule reacts when it is completed "
                           "(hplc.completed) or failed (run.failed)")
    if experiment is not None and experiment.status == "submitted":
        return "experiment.submitted", experiment, ""
    if experiment is not None:
        return None, experiment, (f"experiment {experiment.id} is {experiment.status!r} and "
                                  "has no run that completed or failed")
    return None, None, "no lab row to derive an event from"


def answer_triggered(facts: Facts) -> Answer:
    decisions = list(facts.decisions)
    evidence = tuple(_describe_decision(d) for d in decisions)
    fired = [d for d in decisions if d.outcome == "fired"]
    data: dict[str, Any] = {"decisions": [_decision_data(d) for d in decisions]}
    if fired:
        rules = ", ".join(sorted({str(d.rule_id) for d in fired}))
        kinds = ", ".join(sorted({str(d.event_kind) for d in fired}))
        return Answer("triggered", YES, f"rule(s) {rules} fired on {kinds}", evidence, data=data)
    if decisions:
        return _no_rule_fired(facts, decisions, evidence, data)
    return _no_decision(facts, data)


def _no_rule_fired(facts: Facts, decisions: Sequence[DecisionRecord], evidence: tuple[str, ...],
                   data: dict[str, Any]) -> Answer:
    def rank(decision: DecisionRecord) -> int:
        return _REASON_ORDER.index(decision.reason) if decision.reason in _REASON_ORDER else 0

    # the decisions about the change the lab state should have triggered on come first:
    # an experiment.submitted skip says nothing about why its run's hplc.completed did not fire
    kind, _row, _why = expected_event(facts)
    record = _trigger_record(facts)
    relevant = [d for d in decisions if (kind is not None and d.event_kind == kind)
                or (record is not None and d.origin == record.coordinates)]
    best = min(relevant or decisions, key=rank)
    if _waiting_for_run(facts, best):
        return Answer("triggered", PENDING, "expected, waiting for the run to complete: no rule "
                      "reacts to experiment.submitted; rules fire when a run of the experiment "
                      "completes (hplc.completed) or fails (run.failed)", evidence,
                      data={**data, "reason": "waiting_for_run", "rule_id": None})
    origin = _origin_record(facts, best)
    fixes = _reason_fixes(best, facts)
    if origin is not None:
        fixes += (f"then re-drive the change: `{replay_command(origin)}` (drop --execute for a "
                  "dry run first)",)
    verb = "was fired but not submitted" if best.reason == "submit_failed" else "fired"
    summary = (f"no rule {verb} for {best.event_kind or 'the change'}: {best.reason} - "
               f"{best.detail}")
    return Answer("triggered", NO, summary, evidence, fixes,
                  data={**data, "reason": best.reason, "rule_id": best.rule_id})


def _waiting_for_run(facts: Facts, decision: DecisionRecord) -> bool:
    """A submission nobody reacts to is the normal case: the rules wait for its run.

    True when the best decision is "no rule for experiment.submitted" and no run of
    the experiment has completed or failed yet (that change is what rules react to).
    """
    return (decision.reason == "no_rule_for_kind"
            and decision.event_kind == "experiment.submitted"
            and not any(run.status in ("completed", "failed") for run in facts.runs))


# a field each routed kind's events have, for the example command of a rule to add
_EXAMPLE_ARGS = {"hplc.completed": ("--run", "{payload.run_id}"),
                 "run.failed": ("--run", "{payload.run_id}")}


def _reason_fixes(decision: DecisionRecord, facts: Facts) -> tuple[str, ...]:
    rule, kind = decision.rule_id, decision.event_kind
    tenant = decision.tenant_id or (facts.experiment.tenant_id if facts.experiment else None)
    flag, field = _EXAMPLE_ARGS.get(str(kind), ("--experiment", "{experiment_id}"))
    add_rule = (f"add a rule: INSERT INTO public.trigger_rules (id, tenant_id, event_kind, "
                f"command) VALUES ('<rule-id>', {_sql(tenant)}, '{kind}', "
                f"'[\"<program>\", \"{flag}\", \"{field}\"]');")
    return {
        "no_rule_for_kind": (add_rule,),
        "tenant_mismatch": (f"the rules of {kind} are for other tenants: {add_rule} "
                            "(tenant_id NULL: every tenant)",),
        "rule_disabled": (f"enable it: UPDATE public.trigger_rules SET enabled = true "
                          f"WHERE id = '{rule}';",),
        "condition_false": (f"the condition of rule {rule} does not hold for this event: fix "
                            f"it (UPDATE public.trigger_rules SET condition = '{{...}}' WHERE "
                            f"id = '{rule}';) or the data",),
        "placeholder_missing": (f"rule {rule}'s command uses a field this {kind} event does not "
                                "have: fix its command (docs/topics.md lists the fields)",),
        "rule_invalid": (f"fix the row of rule {rule} in public.trigger_rules (command: "
                         "non-empty JSON array; condition and env: JSON objects)",),
        "enrichment_incomplete": ("the worker did not know the reference rows in time: check "
                                  "that their tables are captured and raise "
                                  "LABSTREAM_WORKER_ENRICHMENT_WAIT_S",),
        "submit_failed": ("the job runner could not write the jobs row: check the worker's "
                          "log and the lab DB (`labstream db status`)",),
    }.get(decision.reason, (f"see the decision: {decision.detail}",))


def _sql(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def _no_decision(facts: Facts, data: dict[str, Any]) -> Answer:
    kind, row, why = expected_event(facts)
    if kind is None:
        status = PENDING if row is not None and row.status in ("queued", "running") else NO
        return Answer("triggered", status, f"nothing to trigger on: {why}", data=data)
    record = current_record(facts, row) if row is not None else None
    assert record is not None  # captured was yes, so the row's current record exists
    worker = facts.worker
    where = f"the {kind} change {record.coordinates}"
    replay = f"`{replay_command(record)}`"
    if worker is None:
        return Answer("triggered", UNKNOWN, f"no decision found for {where}; the worker's "
                      "progress could not be read", data=data)
    dead = next((d for d in worker.dead_letters if d.origin == record.coordinates), None)
    if dead is not None:
        return Answer("triggered", NO, f"the worker dead-lettered {where}: {dead.error}",
                      (f"dead letter on {worker.group}.dlq",),
                      (f"fix the cause, then re-drive it: {replay}",), data=data)
    processed = worker.processed(record)
    if processed is None:
        return Answer("triggered", NO, f"no worker has read {record.topic}: consumer group "
                      f"{worker.group} has no committed offsets",
                      fix=(f"start the worker: `labstream worker` (LABSTREAM_WORKER_APP_ID="
                           f"{worker.group})",), data=data)
    if not processed:
        committed = worker.committed.get(f"{record.topic}/{record.partition}") \
            if worker.committed else None
        return Answer("triggered", PENDING, f"worker group {worker.group} has not processed "
                      f"{where} yet (committed offset {committed})",
                      fix=(f"check that `labstream worker` is running (group {worker.group})",),
                      data=data)
    return Answer("triggered", NO, f"worker group {worker.group} processed {where} but no "
                  f"decision is on {worker.decisions_topic}",
                  fix=(f"check the worker's log and LABSTREAM_WORKER_DECISIONS_TOPIC; "
                       f"re-drive with {replay}",), data=data)


def _origin_record(facts: Facts, decision: DecisionRecord) -> CdcRecord | None:
    by_coordinates = {r.coordinates: r for r in facts.cdc_records}
    if decision.origin in by_coordinates:
        return by_coordinates[decision.origin]
    return _trigger_record(facts)


def _trigger_record(facts: Facts) -> CdcRecord | None:
    """The change record that should have produced the event (to re-drive it)."""
    _kind, row, _why = expected_event(facts)
    return current_record(facts, row) if row is not None else None


def _describe_decision(decision: DecisionRecord) -> str:
    rule = f" rule {decision.rule_id}" if decision.rule_id else ""
    job = f" -> job {decision.job_id}" if decision.job_id else ""
    return (f"{decision.event_kind or '-'}:{rule} {decision.outcome} ({decision.reason}) "
            f"{decision.detail}{job} [{decision.topic}/{decision.partition}/{decision.offset}]")


def _decision_data(decision: DecisionRecord) -> dict[str, Any]:
    return {
        "outcome": decision.outcome, "reason": decision.reason, "detail": decision.detail,
        "event_kind": decision.event_kind, "rule_id": decision.rule_id,
        "job_key": decision.job_key, "job_id": decision.job_id, "origin": decision.origin,
        "coordinates": f"{decision.topic}/{decision.partition}/{decision.offset}",
        "trace_id": decision.trace_id,
    }


# -- 3. started, 4. succeeded -------------------------------------------------------------


def jobs_of_fired(facts: Facts) -> tuple[list[JobFact], list[DecisionRecord]]:
    """The jobs of the fired decisions, and the fired decisions that have no job row."""
    by_key = {job.job_key: job for job in facts.jobs}
    jobs, orphans = [], []
    for decision in facts.decisions:
        if decision.outcome != "fired":
            continue
        job = by_key.get(decision.job_key or "")
        if job is None:
            orphans.append(decision)
        elif job not in jobs:
            jobs.append(job)
    return jobs, orphans


def _job_data(job: JobFact) -> dict[str, Any]:
    return {
        "job_id": job.id, "rule_id": job.rule_id, "backend": job.backend, "status": job.status,
        "attempt": job.attempt, "exit_code": job.exit_code, "error": job.error,
        "trace_id": job.trace_id, "backend_ref": job.backend_ref,
        "duration_s": job.duration_s, "log_lines": job.log_line_count,
        "last_lines": [{"seq": line.seq, "stream": line.stream, "line": line.line}
                       for line in job.last_lines[-_LAST_LINES:]],
    }


def answer_started(facts: Facts) -> Answer:
    jobs, orphans = jobs_of_fired(facts)
    data = {"jobs": [_job_data(job) for job in jobs]}
    evidence = tuple(f"job {j.id} rule {j.rule_id}: {j.status} on {j.backend}, attempt "
                     f"{j.attempt}" + (f", ref {j.backend_ref}" if j.backend_ref else "")
                     for j in jobs)
    if orphans:
        decision = orphans[0]
        if decision.job_id is None:
            return Answer("started", NO, f"rule {decision.rule_id} fired but no job was handed "
                          "to a job runner", evidence,
                          ("run the worker with jobs on: `labstream worker` without --no-jobs, "
                           "LABSTREAM_WORKER_LAUNCH_JOBS=true",), data)
        return Answer("started", NO, f"rule {decision.rule_id} fired job {decision.job_id}, "
                      "but public.jobs has no such row", evidence,
                      ("is the worker writing to this lab DB? check its LABSTREAM_DATABASE_URL",),
                      data)
    failed = [j for j in jobs if j.status == "launch_failed"]
    if failed:
        job = failed[0]
        return Answer("started", NO, f"job {job.id} (rule {job.rule_id}, backend {job.backend}) "
                      f"could not be launched (attempt {job.attempt}): {job.error}", evidence,
                      _rerun_fixes(facts, job, f"fix rule {job.rule_id}'s command, image or "
                                   "backend (UPDATE public.trigger_rules ...)"), data)
    queued = [j for j in jobs if j.status == "queued"]
    if queued:
        job = queued[0]
        return Answer("started", PENDING, f"job {job.id} is queued: rule {job.rule_id} already "
                      "runs its max_concurrency jobs for this tenant", evidence,
                      ("wait, or raise the rule's max_concurrency",), data)
    if not jobs:
        return Answer("started", UNKNOWN, "no job row found for the fired decision(s)",
                      evidence, data=data)
    return Answer("started", YES, f"{len(jobs)} job(s) started", evidence, data=data)


def answer_succeeded(facts: Facts) -> Answer:
    jobs, _ = jobs_of_fired(facts)
    data = {"jobs": [_job_data(job) for job in jobs]}
    evidence = tuple(_describe_end(job) for job in jobs)
    for job in jobs:
        if job.status in ("failed", "timed_out"):
            lines = tuple(f"  [{line.stream} {line.seq}] {line.line}"
                          for line in job.last_lines[-_LAST_LINES:])
            return Answer("succeeded", NO, _failure_summary(job), evidence + lines,
                          _rerun_fixes(facts, job, _failure_fix(job)), data)
    running = [j for j in jobs if j.status == "started"]
    if running:
        return Answer("succeeded", PENDING, f"job {running[0].id} is still running", evidence,
                      ("wait; its log lines arrive in public.job_log_lines as it prints",), data)
    return Answer("succeeded", YES, f"{len(jobs)} job(s) succeeded", evidence, data=data)


def _describe_end(job: JobFact) -> str:
    took = f" in {job.duration_s:.1f} s" if job.duration_s is not None else ""
    code = f", exit code {job.exit_code}" if job.exit_code is not None else ""
    return f"job {job.id}: {job.status}{code}{took}, {job.log_line_count} log line(s)"


def _failure_summary(job: JobFact) -> str:
    took = f" after {job.duration_s:.1f} s" if job.duration_s is not None else ""
    if job.status == "timed_out":
        return f"job {job.id} (rule {job.rule_id}) timed out{took} and was killed"
    if job.exit_code is None:
        return f"job {job.id} (rule {job.rule_id}) failed: {job.error}"
    return f"job {job.id} (rule {job.rule_id}) exited with code {job.exit_code}{took}"


def _failure_fix(job: JobFact) -> str:
    if job.status == "timed_out":
        return (f"raise rule {job.rule_id}'s timeout_s or make the job faster (its log: "
                f"GET /jobs/{job.id}/logs)")
    return (f"read its log (GET /jobs/{job.id}/logs, or SELECT line FROM public.job_log_lines "
            f"WHERE job_id = '{job.id}' ORDER BY seq) and fix the job")


def _rerun_fixes(facts: Facts, job: JobFact, first: str) -> tuple[str, ...]:
    origin = next((r for r in facts.cdc_records if r.coordinates == job.source), None)
    origin = origin or _trigger_record(facts)
    if origin is None:
        return (first,)
    return (first, f"then run it again: `{replay_command(origin)}` (a failed job starts as a "
                   "new attempt)")
