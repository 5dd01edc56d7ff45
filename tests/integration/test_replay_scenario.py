"""Issue 6, end to end: a rule is missing while HPLC runs complete; the rule is added;
the dry run shows exactly the missed runs would now fire; --execute launches exactly
those jobs once each; a second --execute launches none; --rerun-succeeded launches
them again, once each.

Real worker (`labstream worker`, Faust + job runner, local backend) and real Kafka;
the CDC records of the rows this test changes are emitted in the connector's exact
shape under this test's own prefix (see replay_cdc.py), so no other test's rows or
rules reach this worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from replay_cdc import ConnectorShaped
from replay_helpers import REPO, delete_topics, header, labstream, new_traceparent, read_all

from streams.config import WorkerSettings
from streams.topics import ensure_topics, worker_topics
from streams.trigger import job_key

pytestmark = pytest.mark.integration
PARTITIONS = 2


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120,
             log: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def test_missed_runs_are_replayed_once(kafka_bootstrap: str, database_url: str,
                                       unique_name: str, tmp_path: Any) -> None:
    prefix = unique_name
    slug = unique_name.replace("_", "-")
    tenant, rule = slug, f"peaks-{slug}"
    exp_hplc, exp_lcms, instrument = f"exp-{slug}-h", f"exp-{slug}-l", f"hplc-{slug}"
    runs = [f"run-{slug}-{n}" for n in range(4)]  # 0..2 HPLC, 3 LC-MS
    settings = WorkerSettings(app_id=f"{prefix}-worker", cdc_prefix=prefix,
                              routed_prefix=f"{prefix}.routed",
                              decisions_topic=f"{prefix}.decisions", partitions=PARTITIONS,
                              enrichment_wait_s=2.0, data_dir=tmp_path / "faust")
    topics = worker_topics(settings)
    env = {**os.environ,
           "LABSTREAM_WORKER_APP_ID": settings.app_id,
           "LABSTREAM_WORKER_CDC_PREFIX": prefix,
           "LABSTREAM_WORKER_ROUTED_PREFIX": settings.routed_prefix,
           "LABSTREAM_WORKER_DECISIONS_TOPIC": settings.decisions_topic,
           "LABSTREAM_WORKER_PARTITIONS": str(PARTITIONS),
           "LABSTREAM_WORKER_ENRICHMENT_WAIT_S": "2",
           "LABSTREAM_WORKER_DATA_DIR": str(tmp_path / "faust")}
    ensure_topics(settings, topics)
    cdc = ConnectorShaped(database_url, kafka_bootstrap, prefix)
    db = psycopg.connect(database_url, autocommit=True)
    worker: subprocess.Popen[str] | None = None
    runs_topic = settings.cdc_topic("runs")
    try:
        # -- the lab before the incident: reference rows and runs in progress ---------------
        db.execute("INSERT INTO public.tenants (id, name) VALUES (%s, 'Replay scenario')",
                   (tenant,))
        for exp, kind in ((exp_hplc, "hplc"), (exp_lcms, "lc-ms")):
            db.execute("INSERT INTO public.experiments (id, tenant_id, kind, submitted_by, status)"
                       " VALUES (%s, %s, %s, 'replay-test', 'running')", (exp, tenant, kind))
        db.execute("INSERT INTO public.instruments (id, name, kind) VALUES (%s, 'HPLC', 'hplc')",
                   (instrument,))
        cdc.created("tenants", tenant)
        cdc.created("experiments", exp_hplc)
        cdc.created("experiments", exp_lcms)
        cdc.created("instruments", instrument)
        for index, run in enumerate(runs):
            db.execute("INSERT INTO public.runs (id, experiment_id, instrument_id, status, "
                       "started_at) VALUES (%s, %s, %s, 'running', now())",
                       (run, exp_lcms if index == 3 else exp_hplc, instrument))
            cdc.created("runs", run)

        worker_log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen([str(REPO / ".venv/bin/labstream"), "worker"], env=env,
                                  stdout=worker_log, stderr=subprocess.STDOUT, text=True)

        # -- the incident: the runs complete while no rule exists for hplc.completed -------
        original_traces = {}
        for run in runs:
            before = cdc.row_text("runs", run)
            db.execute("UPDATE public.runs SET status = 'completed', finished_at = now(), "
                       "result = %s WHERE id = %s",
                       (json.dumps({"peaks": [{"rt_min": 1.2, "area": 10.5, "height": 3}]}), run))
            traceparent = new_traceparent()
            original_traces[run] = traceparent.split("-")[1]
            cdc.emit("runs", "u", before, cdc.row_text("runs", run),
                     headers=[("traceparent", traceparent.encode())])

        def decisions() -> list[dict[str, Any]]:
            return [json.loads(m.value()) for m in
                    read_all(kafka_bootstrap, settings.decisions_topic, PARTITIONS)]

        then = wait_for("the worker's decisions on the completed runs",
                        lambda: (found := decisions()) and len(found) >= 3 and found,
                        log=tmp_path / "worker.log")
        assert sorted(d["reason"] for d in then) == ["no_rule_for_kind"] * 3
        assert not db.execute("SELECT 1 FROM public.jobs WHERE rule_id = %s", (rule,)).fetchall()

        # -- the fix: the rule is added ----------------------------------------------------
        db.execute("INSERT INTO public.trigger_rules (id, tenant_id, event_kind, command, "
                   "backend, timeout_s) VALUES (%s, %s, 'hplc.completed', %s, 'local', 60)",
                   (rule, tenant, json.dumps(["echo", "peaks of {payload.run_id}"])))
        cdc.created("trigger_rules", rule)
        selection = ["--topic", runs_topic, "--filter", 'after.status == "completed"']

        # -- dry run: exactly the missed runs would now fire ---------------------------------
        dry = labstream("replay", "run", *selection, "--json", env=env)
        assert dry.returncode == 0, dry.stderr
        outcomes = [json.loads(line) for line in dry.stdout.splitlines()]
        assert len(outcomes) == 4
        firing = sorted(o["key"] for o in outcomes
                        if [d["launch"] for d in o["now"]] == ["would launch"])
        assert firing == sorted(runs[:3]), dry.stdout
        for outcome in outcomes:
            if outcome["key"] in runs[:3]:
                assert outcome["changed"] and outcome["then"][0]["reason"] == "no_rule_for_kind"
                assert outcome["now"][0]["rule_id"] == rule
            else:
                assert outcome["status"] == "not_routed"
        human = labstream("replay", "run", *selection, env=env)
        assert human.stdout.count(f"then: skipped, no_rule_for_kind; now: fires rule {rule} "
                                  "(would launch)") == 3, human.stdout
        expected_keys = {o["key"]: o["now"][0]["job_key"] for o in outcomes if o["now"]}

        # -- --execute: exactly those jobs, once each ----------------------------------------
        first = labstream("replay", "run", *selection, "--execute", "--yes", env=env)
        assert first.returncode == 0, first.stderr
        assert "matched 4, undecodable 0, produced 4" in first.stdout

        def jobs() -> list[tuple[str, str, int, str | None]]:
            return db.execute("SELECT job_key, status, attempt, traceparent FROM public.jobs "
                              "WHERE rule_id = %s ORDER BY job_key", (rule,)).fetchall()

        done = wait_for("three succeeded jobs",
                        lambda: (rows := jobs()) and all(r[1] == "succeeded" for r in rows)
                        and len(rows) >= 3 and rows)
        assert sorted(r[0] for r in done) == sorted(expected_keys.values())
        assert all(r[2] == 1 for r in done)
        # the job keys are the worker's: rule + table + primary key + source LSN
        assert all(key.startswith(f"{rule}:") for key in expected_keys.values())
        assert job_key(rule, "x") != job_key(rule, "y")
        # the jobs ran in the replay's new traces, not the originals
        job_traces = {r[3].split("-")[1] for r in done if r[3]}
        assert len(job_traces) == 3 and not job_traces & set(original_traces.values())
        replayed = [m for m in read_all(kafka_bootstrap, runs_topic, PARTITIONS)
                    if header(m, "labstream-replay-id")]
        assert len(replayed) == 4

        # -- a second --execute launches none -------------------------------------------------
        fired_before = sum(d["outcome"] == "fired" for d in decisions())
        assert fired_before == 3
        second = labstream("replay", "run", *selection, "--execute", "--yes", env=env)
        assert second.returncode == 0, second.stderr
        # the same selection: the same four originals (the first replay's copies are left out)
        assert "matched 4, undecodable 0, produced 4" in second.stdout
        wait_for("the worker's decisions on the second replay",
                 lambda: sum(d["outcome"] == "fired" for d in decisions()) >= 6)
        again = jobs()
        assert [(r[0], r[1], r[2]) for r in again] == [(r[0], r[1], r[2]) for r in done]
        # the worker asked the runner each time; no new attempt (job_key, status, attempt
        # unchanged above). Decisions no longer say whether a job was created: they are
        # published before the job is queued (issue 12), naming its stable job id.
        fired = [d for d in decisions() if d["outcome"] == "fired"]
        assert len({d["job_id"] for d in fired}) == 3, fired
        dry_after = labstream("replay", "run", "--topic", runs_topic, "--filter",
                              f'after.id == "{runs[0]}"', env=env)
        assert "already succeeded" in dry_after.stdout, dry_after.stdout

        # -- asked explicitly: --rerun-succeeded launches them again, once each ---------------
        third = labstream("replay", "run", *selection, "--execute", "--yes",
                          "--rerun-succeeded", env=env)
        assert third.returncode == 0, third.stderr
        rerun = wait_for("the jobs' second attempts",
                         lambda: (rows := jobs()) and all(r[2] == 2 and r[1] == "succeeded"
                                                          for r in rows) and rows)
        assert sorted(r[0] for r in rerun) == sorted(expected_keys.values())
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        cdc.close()
        db.execute("DELETE FROM public.jobs WHERE rule_id = %s", (rule,))
        db.execute("DELETE FROM public.trigger_rules WHERE id = %s", (rule,))
        db.execute("DELETE FROM public.runs WHERE id = ANY(%s)", (runs,))
        db.execute("DELETE FROM public.experiments WHERE tenant_id = %s", (tenant,))
        db.execute("DELETE FROM public.instruments WHERE id = %s", (instrument,))
        db.execute("DELETE FROM public.tenants WHERE id = %s", (tenant,))
        db.close()
        # Faust's own assignor topic is not among the worker's topics
        delete_topics(kafka_bootstrap, *topics.all_names, f"{settings.app_id}-__assignor-__leader")
