"""Issue 6 through the real chain: `labstream cdc` + `labstream worker` + `labstream replay`.

HPLC runs complete in real SQL transactions (each carrying a traceparent WAL message)
while no rule exists, so the worker records skipped decisions. The rule is added in
`trigger_rules` (captured by CDC); one more run completes and fires live (the control).
The dry run over the chain's runs topic shows exactly the missed runs would now fire;
`--execute --yes` launches exactly those jobs, once each; a second `--execute --yes`
launches none. The replayed records carry the replay headers and their jobs run in new
traces linked to the originals (the `replay <topic>` spans in `labstream.spans`).

Unlike test_replay_scenario.py, nothing here imitates the connector: the records are
the connector's own, from the WAL.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from explain_helpers import CHAIN_ATTRIBUTE, Chain, chain, execute, wait_for
from opentelemetry.sdk.trace import TracerProvider
from replay_helpers import header, labstream, new_traceparent, read_all

from replay.headers import REPLAY_ID, REPLAY_OF

pytestmark = pytest.mark.integration
MISSED = 3


def decisions_of(lab_chain: Chain, experiment_id: str) -> list[dict[str, Any]]:
    topic = lab_chain.decisions_topic
    metadata = AdminClient({"bootstrap.servers": lab_chain.bootstrap}).list_topics(topic,
                                                                                   timeout=10)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        return []
    found = [json.loads(m.value()) for m in read_all(
        lab_chain.bootstrap, topic, len(metadata.topics[topic].partitions))]
    return [d for d in found if d.get("experiment_id") == experiment_id]


def records_of(lab_chain: Chain, topic: str, experiment_id: str) -> list[Any]:
    metadata = AdminClient({"bootstrap.servers": lab_chain.bootstrap}).list_topics(topic,
                                                                                   timeout=10)
    records = read_all(lab_chain.bootstrap, topic, len(metadata.topics[topic].partitions))
    return [m for m in records if m.value() and experiment_id.encode() in m.value()]


def jobs_of(lab_chain: Chain, rule_id: str) -> list[tuple[Any, ...]]:
    return execute(lab_chain.database_url,
                   "SELECT job_key, status, attempt, traceparent FROM public.jobs "
                   "WHERE rule_id = %s ORDER BY job_key", (rule_id,))


def test_missed_runs_are_replayed_once_through_the_real_chain(stack: Any,
                                                              tmp_path: Path) -> None:
    with chain(stack.database_url, stack.kafka_bootstrap, tmp_path,
               otlp_endpoint=None) as lab_chain:
        run_incident(lab_chain)


def run_incident(lab_chain: Chain) -> None:
    url = lab_chain.database_url
    runs_topic = f"{lab_chain.name}.public.runs"
    tenant, instrument = lab_chain.tenant(), lab_chain.instrument()
    experiment = f"exp-{uuid.uuid4().hex[:12]}"
    execute(url, "INSERT INTO public.experiments (id, tenant_id, kind, submitted_by) VALUES "
            "(%s, %s, 'hplc', 'ada')", (experiment, tenant))
    lab_chain.wait_until_delivered("experiments", experiment)
    lab_chain.wait_until_delivered("instruments", instrument)
    # a provider without exporters: the run's span is a child of the traceparent given,
    # so the WAL message (and the connector's record header) carries its trace id
    provider = TracerProvider()

    # -- the incident: HPLC runs complete while no rule exists for hplc.completed --------
    original_traces: dict[str, str] = {}
    for _ in range(MISSED):
        traceparent = new_traceparent()
        run_id = lab_chain.complete_run(experiment, instrument, traceparent, provider)
        original_traces[run_id] = traceparent.split("-")[1]
    missed = sorted(original_traces)
    # only the runs' decisions: the experiment's own insert is routed too
    # (experiment.submitted), and rules of other chains on the shared DB may match it
    skipped = wait_for(lambda: (found := [d for d in decisions_of(lab_chain, experiment)
                                          if d.get("event_kind") == "hplc.completed"])
                       and len(found) >= MISSED and found, 90, "the skipped decisions")
    assert sorted(d["outcome"] for d in skipped) == ["skipped"] * MISSED, skipped
    assert {d["reason"] for d in skipped} == {"no_rule_for_kind"}, skipped

    # -- the fix: the rule is added (through CDC); a new run fires live -----------------
    rule = lab_chain.rule(tenant, [sys.executable, "-c", "pass"], timeout_s=60)
    control = lab_chain.complete_run(experiment, instrument, new_traceparent(), provider)
    live = wait_for(lambda: [j for j in jobs_of(lab_chain, rule) if j[1] == "succeeded"],
                    90, "the control run's job")
    assert len(live) == 1, live
    control_key = live[0][0]

    env = {**lab_chain.tracing_env(), **lab_chain.worker_env()}
    selection = ["--topic", runs_topic, "--filter", f'after.experiment_id == "{experiment}"']

    # -- dry run: exactly the missed runs would now fire ---------------------------------
    dry = labstream("replay", "run", *selection, "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    outcomes = {o["key"]: o for o in map(json.loads, dry.stdout.splitlines())}
    assert sorted(outcomes) == sorted([*missed, control]), dry.stdout
    would = sorted(k for k, o in outcomes.items()
                   if [d["launch"] for d in o["now"]] == ["would launch"])
    assert would == missed, dry.stdout
    for run_id in missed:
        assert outcomes[run_id]["then"][0]["reason"] == "no_rule_for_kind", dry.stdout
        assert outcomes[run_id]["now"][0]["rule_id"] == rule
        assert outcomes[run_id]["trace_id"] == original_traces[run_id]
    assert outcomes[control]["now"][0]["job_key"] == control_key
    assert outcomes[control]["now"][0]["launch"].startswith("already succeeded"), dry.stdout
    expected_keys = {run_id: outcomes[run_id]["now"][0]["job_key"] for run_id in missed}
    assert jobs_of(lab_chain, rule) == live  # a dry run launches nothing

    # -- --execute: exactly those jobs, once each ------------------------------------------
    first = labstream("replay", "run", *selection, "--execute", "--yes", env=env)
    assert first.returncode == 0, first.stderr
    assert f"matched {MISSED + 1}, undecodable 0, produced {MISSED + 1}" in first.stdout, \
        first.stdout
    done = wait_for(lambda: (rows := jobs_of(lab_chain, rule)) and len(rows) >= MISSED + 1
                    and all(r[1] == "succeeded" for r in rows) and rows, 90,
                    "the replayed jobs to succeed")
    by_key = {row[0]: row for row in done}
    assert len(done) == len(by_key) == MISSED + 1, done  # one row per job key
    assert set(by_key) == {*expected_keys.values(), control_key}
    assert all(row[2] == 1 for row in done), done  # each launched once

    # -- the replayed records are marked and point at their originals ---------------------
    records = records_of(lab_chain, runs_topic, experiment)
    originals = [m for m in records if not header(m, REPLAY_ID)]
    copies = [m for m in records if header(m, REPLAY_ID)]
    assert len(originals) == len(copies) == MISSED + 1
    original_coordinates = {f"{m.topic()}/{m.partition()}/{m.offset()}" for m in originals}
    assert {header(m, REPLAY_OF) for m in copies} == original_coordinates
    assert len({header(m, REPLAY_ID) for m in copies}) == 1

    # -- the replayed jobs run in new traces linked to the originals ----------------------
    spans = replay_spans(lab_chain, runs_topic)
    for run_id, key in expected_keys.items():
        job_trace = by_key[key][3].split("-")[1]
        assert job_trace != original_traces[run_id]
        assert job_trace in spans, (run_id, spans)
        assert original_traces[run_id] in spans[job_trace], (run_id, spans[job_trace])

    # -- a second --execute launches none --------------------------------------------------
    def fired() -> list[dict[str, Any]]:
        return [d for d in decisions_of(lab_chain, experiment) if d["outcome"] == "fired"]

    # the control live, then all four replayed (the control's copy: already succeeded)
    fired_before = wait_for(lambda: len(found := fired()) >= MISSED + 2 and found, 60,
                            "the worker's decisions on the first replay")
    assert len(fired_before) == MISSED + 2, fired_before
    # decisions are published before their job is queued (issue 12): they name the job by
    # its stable id, not whether it was created; the rows below show nothing ran twice
    assert len({d["job_id"] for d in fired_before}) == MISSED + 1, fired_before
    second = labstream("replay", "run", *selection, "--execute", "--yes", env=env)
    assert second.returncode == 0, second.stderr
    # the same four originals: the first replay's copies are left out by default
    assert f"matched {MISSED + 1}, undecodable 0, produced {MISSED + 1}" in second.stdout
    fired_after = wait_for(lambda: len(found := fired()) >= 2 * (MISSED + 1) + 1 and found,
                           90, "the worker's decisions on the second replay")
    # the worker asked the runner again for every copy; none created a job
    assert len(fired_after) == 2 * (MISSED + 1) + 1, fired_after
    assert len({d["job_id"] for d in fired_after}) == MISSED + 1, fired_after
    assert [row[:3] for row in jobs_of(lab_chain, rule)] == [row[:3] for row in done]


def replay_spans(lab_chain: Chain, runs_topic: str) -> dict[str, set[str]]:
    """trace id of each `replay <topic>` span of this chain -> the trace ids it links to."""
    def found() -> dict[str, set[str]]:
        rows = execute(lab_chain.database_url,
                       "SELECT trace_id, links FROM labstream.spans WHERE name = %s "
                       "AND resource ->> %s = %s",
                       (f"replay {runs_topic}", CHAIN_ATTRIBUTE, lab_chain.name))
        links = {row[0]: {link["trace_id"] for link in _json(row[1])} for row in rows}
        return links if len(links) >= MISSED + 1 else {}

    return wait_for(found, 30, "the replay spans in labstream.spans")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
