"""Chain audit (helper of test_chain_audit.py and bench/chain_audit.py; not a test module):
a burst of rule-matching changes through the worker and its job runner
while the worker is SIGKILLed at random moments, SIGTERMed once, and PostgreSQL and
Kafka are restarted once each; then count (issue 12).

    .venv/bin/python bench/chain_audit.py --events 600 --kills 10 --seed 1

At the end, for every change a rule matched: exactly one job row, in a terminal state;
its fired decision(s) in Kafka all name the same job (the decisions topic is at least
once: a record handled again after a kill repeats its decision, counted below); every
attempt's side effect (a marker file created with O_EXCL, named job.attempt) ran at most
once; no process of any of these jobs is left. The changes are CDC-shaped records
produced straight to the worker's topics (tests/integration/streams_harness.py), not
the simulator through the connector: this audits the back half of the chain.
tests/integration/test_chain_audit.py runs a short version of it.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from streams_harness import WorkerHarness, reference_rows, rule_row, run_row

from base.settings import service_settings
from labstream.stack import control, kafka, postgres
from labstream.stack.settings import stack_settings
from streams.jobs import processes
from streams.trigger import job_key

# the job: its side effect is a marker file <job id>.<attempt> created with O_EXCL, so an
# attempt that ran twice cannot go unnoticed; then it works for a moment
JOB_SCRIPT = """\
import os, random, sys, time
marks = sys.argv[1]
name = os.environ["LABSTREAM_JOB_ID"] + "." + os.environ["LABSTREAM_JOB_ATTEMPT"]
try:
    os.close(os.open(os.path.join(marks, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
except FileExistsError:
    with open(os.path.join(marks, "DUPLICATES"), "a") as out:
        out.write(name + "\\n")
time.sleep(random.uniform(0.2, 3.0))
"""
WORKER_ENV = {
    "LABSTREAM_JOBS_HEARTBEAT_S": "1",
    "LABSTREAM_JOBS_LEASE_S": "10",
    "LABSTREAM_JOBS_STOP_GRACE_S": "5",
    "LABSTREAM_JOBS_KILL_GRACE_S": "1",
    "LABSTREAM_JOBS_MAX_RUNNING": "16",
}


@dataclass
class AuditResult:
    matched: int = 0
    decided: int = 0  # matched changes with a fired decision in Kafka
    decision_records: int = 0  # fired decision records (>= decided: at least once)
    conflicting_decisions: int = 0  # a change whose decisions name different jobs
    jobs: int = 0
    terminal: int = 0
    succeeded: int = 0
    attempts: int = 0
    jobs_run_again: int = 0  # jobs with more than one attempt (taken over / handed back)
    duplicate_attempts: list[str] = field(default_factory=list)
    attempts_without_row: int = 0
    orphans: list[int] = field(default_factory=list)
    disruptions: list[str] = field(default_factory=list)
    worker_crashes: int = 0
    sigterm_exit_s: float | None = None  # SIGTERM -> exit (grace: LABSTREAM_JOBS_STOP_GRACE_S)
    sigterm_exit_code: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.decided == self.matched == self.jobs == self.terminal
                and not self.conflicting_decisions and not self.duplicate_attempts
                and not self.attempts_without_row and not self.orphans)

    def lines(self) -> list[str]:
        return [f"{name}: {value}" for name, value in vars(self).items()] + [f"ok: {self.ok}"]


def restart_postgres() -> None:
    settings, knobs = service_settings(), stack_settings()
    paths = control.state_paths(settings)
    postgres.stop(paths)
    control.up_postgres(paths, settings, knobs, lambda message: None)


def restart_kafka() -> None:
    settings, knobs = service_settings(), stack_settings()
    paths = control.state_paths(settings)
    kafka.stop(paths)
    control.up_kafka(paths, settings, knobs, kafka.ensure_java(), lambda message: None)


class Audit:
    def __init__(self, harness: WorkerHarness, database_url: str, marks: Path, *,
                 events: int, kills: int, seed: int, restarts: bool = True) -> None:
        self.harness = harness
        self.database_url = database_url
        self.marks = marks
        self.events = events
        self.kills = kills
        self.random = random.Random(seed)
        self.restarts = restarts
        self.rule_id = f"audit-{harness.name}"[:60]
        self.expected: dict[str, str] = {}
        self.result = AuditResult()
        self.worker: Any = None

    # -- setup and load ---------------------------------------------------------------------
    def setup(self) -> None:
        script = self.marks.parent / "audit_job.py"
        script.write_text(JOB_SCRIPT)
        reference_rows(self.harness)
        self.harness.send("trigger_rules", "c", rule_row(
            self.rule_id, "run.failed", command=[sys.executable, str(script), str(self.marks)]))
        self.harness.flush()
        self.worker = self.harness.start_worker()

    def send_batch(self, start: int, count: int) -> None:
        for index in range(start, min(start + count, self.events)):
            run_id = f"run-{index}"
            lsn = 10_000 + index
            self.expected[job_key(self.rule_id, f'runs:{{"id":"{run_id}"}}:{lsn}')] = run_id
            self.harness.send("runs", "u", run_row(run_id, "failed"),
                              run_row(run_id, "running"), lsn=lsn)
        self.harness.producer.flush(60)

    def keep_a_worker(self) -> None:
        """A worker that ended on its own (not by our signal) is counted and replaced."""
        if self.worker is not None and self.worker.poll() is not None:
            if self.worker.returncode not in (-signal.SIGKILL, 0, -signal.SIGTERM):
                self.result.worker_crashes += 1
            self.worker = self.harness.start_worker()

    def disrupt(self, what: str) -> None:
        self.result.disruptions.append(what)
        if what == "sigkill":
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait(30)
            self.worker = self.harness.start_worker()
        elif what == "sigterm":
            began = time.monotonic()
            self.worker.send_signal(signal.SIGTERM)
            self.result.sigterm_exit_code = self.worker.wait(60)
            self.result.sigterm_exit_s = round(time.monotonic() - began, 1)
            self.worker = self.harness.start_worker()
        elif what == "postgres":
            restart_postgres()
        elif what == "kafka":
            restart_kafka()

    def run(self) -> AuditResult:
        began = time.monotonic()
        self.setup()
        plan = ["sigkill"] * self.kills + ["sigterm"]
        if self.restarts:
            plan += ["postgres", "kafka"]
        self.random.shuffle(plan)
        per_step = max(1, self.events // (len(plan) + 1))
        sent = 0
        for what in plan:
            self.send_batch(sent, per_step)
            sent += per_step
            self.wait_until_working(jobs_at_least=len(self.job_rows()) + 1)
            time.sleep(self.random.uniform(0.0, 1.0))  # a random moment while it works
            self.keep_a_worker()
            self.disrupt(what)
        self.send_batch(sent, self.events - sent)
        self.wait_for_the_end(timeout_s=240 + 2 * self.events / 10)
        self.count()
        self.result.seconds = round(time.monotonic() - began, 1)
        return self.result

    def wait_until_working(self, jobs_at_least: int, timeout_s: float = 90) -> None:
        """Until the worker queued a job of the new batch: a disruption then hits real work
        (a worker still starting up would make a SIGKILL harmless)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.keep_a_worker()
            try:
                if len(self.job_rows()) >= jobs_at_least:
                    return
            except psycopg.OperationalError:
                pass
            time.sleep(0.1)

    # -- the end ----------------------------------------------------------------------------
    def job_rows(self) -> list[tuple[str, str, str, int]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute("SELECT job_key, id, status, attempt FROM public.jobs "
                                "WHERE rule_id = %s", (self.rule_id,)).fetchall()

    def wait_for_the_end(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.keep_a_worker()
            try:
                rows = self.job_rows()
            except psycopg.OperationalError:
                rows = []
            if len(rows) >= len(self.expected) and all(r[2] not in ("queued", "started")
                                                       for r in rows):
                return
            time.sleep(0.5)

    def count(self) -> None:
        result = self.result
        result.matched = len(self.expected)
        fired = [d for d in self.harness.records("decisions")
                 if d.get("outcome") == "fired" and d.get("rule_id") == self.rule_id]
        deadline = time.monotonic() + 30
        while {d["job_key"] for d in fired} < set(self.expected) and time.monotonic() < deadline:
            fired = [d for d in self.harness.records("decisions")
                     if d.get("outcome") == "fired" and d.get("rule_id") == self.rule_id]
        named: dict[str, set[str]] = {}
        for decision in fired:
            named.setdefault(decision["job_key"], set()).add(decision.get("job_id") or "")
        result.decision_records = len(fired)
        result.decided = len(set(named) & set(self.expected))
        result.conflicting_decisions = sum(len(ids) > 1 for ids in named.values())
        rows = [r for r in self.job_rows() if r[0] in self.expected]
        result.jobs = len({r[0] for r in rows})
        result.terminal = sum(r[2] not in ("queued", "started") for r in rows)
        result.succeeded = sum(r[2] == "succeeded" for r in rows)
        result.jobs_run_again = sum(r[3] > 1 for r in rows)
        attempts_by_id = {r[1]: r[3] for r in rows}
        duplicates = self.marks / "DUPLICATES"
        result.duplicate_attempts = duplicates.read_text().split() if duplicates.exists() else []
        markers = [p.name.rsplit(".", 1) for p in self.marks.iterdir() if "." in p.name]
        result.attempts = len(markers)
        result.attempts_without_row = sum(
            job_id not in attempts_by_id or int(attempt) > attempts_by_id[job_id]
            for job_id, attempt in markers)
        result.orphans = sorted(pid for job_id in attempts_by_id
                                for pid in processes.job_processes(job_id, 10**6))

    def cleanup(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM public.jobs WHERE rule_id = %s", (self.rule_id,))
