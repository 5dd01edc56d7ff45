"""Dry run against the real stack: today's enrich/route/trigger over recorded events,
then-vs-now from the decisions topic, and what --execute would launch."""

from __future__ import annotations

import json
import os
import time

import psycopg
import pytest
from confluent_kafka import Producer
from replay_helpers import RunSpec, create_topic, delete_topics, labstream, produce_runs

from streams.codec import decision_key, decision_value
from streams.records import Decision, SourceCoordinates
from streams.trigger import job_key

pytestmark = pytest.mark.integration

BASE_MS = (int(time.time()) - 900) * 1000


@pytest.fixture
def lab_rows(database_url: str, unique_name: str):  # type: ignore[no-untyped-def]
    """A tenant, an HPLC and an LC-MS experiment, an instrument and (later) a rule."""
    names = {
        "tenant": unique_name.replace("_", "-"),
        "hplc": f"exp-{unique_name}-h",
        "lcms": f"exp-{unique_name}-l",
        "instrument": f"hplc-{unique_name}",
        "rule": f"peaks-{unique_name}".replace("_", "-"),
    }
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO public.tenants (id, name) VALUES (%s, 'Replay test')", (names["tenant"],)
        )
        for key, kind in (("hplc", "hplc"), ("lcms", "lc-ms")):
            conn.execute(
                "INSERT INTO public.experiments (id, tenant_id, kind, submitted_by) "
                "VALUES (%s, %s, %s, 'replay-test')",
                (names[key], names["tenant"], kind),
            )
        conn.execute(
            "INSERT INTO public.instruments (id, name, kind) VALUES (%s, 'HPLC', 'hplc')",
            (names["instrument"],),
        )
    yield names
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM public.jobs WHERE rule_id = %s", (names["rule"],))
        conn.execute("DELETE FROM public.trigger_rules WHERE id = %s", (names["rule"],))
        conn.execute("DELETE FROM public.experiments WHERE tenant_id = %s", (names["tenant"],))
        conn.execute("DELETE FROM public.instruments WHERE id = %s", (names["instrument"],))
        conn.execute("DELETE FROM public.tenants WHERE id = %s", (names["tenant"],))


def add_rule(database_url: str, names: dict[str, str]) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO public.trigger_rules (id, tenant_id, event_kind, command) "
            "VALUES (%s, %s, 'hplc.completed', %s)",
            (names["rule"], names["tenant"], json.dumps(["echo", "{payload.run_id}"])),
        )


def test_dry_run_shows_what_would_fire_now(
    kafka_bootstrap: str, database_url: str, unique_name: str, lab_rows: dict[str, str]
) -> None:
    hplc, lcms, instrument = lab_rows["hplc"], lab_rows["lcms"], lab_rows["instrument"]
    specs = [
        RunSpec(
            "run-a",
            "",
            "completed",
            experiment_id=hplc,
            instrument_id=instrument,
            timestamp_ms=BASE_MS,
        ),
        RunSpec(
            "run-b",
            "",
            "completed",
            experiment_id=lcms,
            instrument_id=instrument,
            timestamp_ms=BASE_MS + 1000,
        ),
        RunSpec(
            "run-c",
            "",
            "completed",
            experiment_id=hplc,
            instrument_id=instrument,
            timestamp_ms=BASE_MS + 2000,
        ),
        RunSpec(
            "run-d",
            "",
            "failed",
            experiment_id=hplc,
            instrument_id=instrument,
            timestamp_ms=BASE_MS + 3000,
        ),
    ]
    topic, produced = produce_runs(kafka_bootstrap, database_url, unique_name, specs, partitions=1)
    decisions_topic = f"{unique_name}.decisions"
    create_topic(kafka_bootstrap, decisions_topic, 1)
    # what the chain decided then: no rule existed for hplc.completed
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for item in (produced[0], produced[2]):
        then = Decision(
            "skipped",
            "no_rule_for_kind",
            "no trigger rule has event_kind 'hplc.completed'",
            "hplc.completed",
            "x",
            origin=SourceCoordinates(topic, item.partition, item.offset),
        )
        producer.produce(decisions_topic, key=decision_key(then), value=decision_value(then))
    assert producer.flush(15) == 0
    add_rule(database_url, lab_rows)
    # run-c's job already ran and succeeded (e.g. launched by hand): not launched again
    change_c = f'runs:{{"id":"run-c"}}:{1000 + 2}'
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO public.jobs (id, job_key, rule_id, backend, status) "
            "VALUES (%s, %s, %s, 'local', 'succeeded')",
            (f"job-{unique_name}", job_key(lab_rows["rule"], change_c), lab_rows["rule"]),
        )
    env = {"LABSTREAM_WORKER_DECISIONS_TOPIC": decisions_topic}
    try:
        result = labstream(
            "replay", "run", "--topic", topic, "--reference", "db", env={**os.environ, **env}
        )
        assert result.returncode == 0, result.stderr
        lines = {line.split(" ")[0]: line for line in result.stdout.splitlines()}
        a, b, c, d = (lines[f"{topic}/0/{p.offset}"] for p in produced)
        # other tests' rules may exist too: look at ours
        assert "then: skipped, no_rule_for_kind; now: " in a
        assert f"fires rule {lab_rows['rule']} (would launch)" in a
        assert "not_routed" in b  # an LC-MS run: not an hplc.completed event
        assert f"fires rule {lab_rows['rule']} (already succeeded" in c
        assert "[run.failed]" in d and lab_rows["rule"] not in d
        assert "produced 0" in result.stderr or "produced 0" in result.stdout

        as_json = labstream(
            "replay",
            "run",
            "--topic",
            topic,
            "--json",
            "--reference",
            "db",
            env={**os.environ, **env},
        )
        assert as_json.returncode == 0, as_json.stderr
        outcomes = [json.loads(line) for line in as_json.stdout.splitlines()]
        mine = [d for o in outcomes for d in o["now"] if d["rule_id"] == lab_rows["rule"]]
        assert sorted(d["launch"].split(":")[0] for d in mine) == [
            "already succeeded",
            "would launch",
        ]
        assert (
            outcomes[0]["changed"] is True
            and outcomes[0]["then"][0]["reason"] == "no_rule_for_kind"
        )
    finally:
        delete_topics(kafka_bootstrap, topic, decisions_topic)


def test_dry_run_progress_counts_to_the_limit(database_url: str, unique_name: str) -> None:
    """Progress on stderr while a long dry run reads (output to a file, not a terminal),
    and its total is --limit, not the whole partition."""
    from base.settings import service_settings
    from replay import runner
    from replay.dryrun import PROGRESS_EVERY, dry_run
    from replay.selection import build_selection

    bootstrap = service_settings().kafka_bootstrap_servers
    specs = [RunSpec(f"run-{i}", "hplc", "completed", partition=0,
                     timestamp_ms=BASE_MS + i) for i in range(3 * PROGRESS_EVERY)]
    topic, _ = produce_runs(bootstrap, database_url, unique_name, specs, partitions=1)
    try:
        seen: list[tuple[int, int | None]] = []
        with runner.Session() as session:
            report = dry_run(session, build_selection(topics=[topic], limit=2 * PROGRESS_EVERY),
                             reference_source="db", on_progress=lambda *p: seen.append(p))
        assert len(report.outcomes) == 2 * PROGRESS_EVERY
        assert seen == [(PROGRESS_EVERY, 2 * PROGRESS_EVERY),
                        (2 * PROGRESS_EVERY, 2 * PROGRESS_EVERY),
                        (2 * PROGRESS_EVERY, 2 * PROGRESS_EVERY)]
        result = labstream("replay", "run", "--topic", topic, "--limit", "700",
                           "--reference", "db")
        assert result.returncode == 0, result.stderr
        # the first progress line comes at record 500 (then at most one every 5 s)
        assert "dry run: 500 of 700 records read" in result.stderr, result.stderr
    finally:
        delete_topics(bootstrap, topic)
