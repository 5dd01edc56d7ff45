"""Commit-to-job-start latency of the whole chain at a steady rate (issue 4).

    .venv/bin/python bench/streams_latency.py --rate 5 --rate 20 --seconds 60 --repeat 3

Each repetition starts a fresh chain with unique names (`labstream cdc run` and one
`labstream worker` subprocess, set up by tests/integration/explain_helpers.py, which
also cleans up), a rule on `hplc.completed` running `/bin/true <run id>` on the local
backend, then a paced writer completes HPLC runs (one INSERT per transaction) at a
fixed rate. Afterwards, per run: commit time (client clock, taken right after COMMIT)
-> `jobs.started_at` (commit-to-job-start) and -> the broker timestamp of its `fired`
decision (the chain's decisions topic, created with LogAppendTime), so the job
launcher's share is visible. CPU seconds and VmHWM of the worker process from /proc.
One host, one clock. Method: /work/shared/BENCHMARKING.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

import psycopg  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)
from explain_helpers import PEAKS, Chain, chain, execute, wait_for  # noqa: E402

from base.settings import service_settings  # noqa: E402
from bench.common import (  # noqa: E402
    ProcessProbe,
    create_log_append_topics,
    loadavg,
    machine_info,
    median,
    percentile,
)

JOB = ["/bin/true", "{payload.run_id}"]
WARMUP_RUNS = 5
RUN_ID = re.compile(rb"run-[0-9a-f]{12}")


def summary(latencies_ms: list[float]) -> dict[str, float]:
    ordered: list[Any] = sorted(latencies_ms)  # common.percentile: nearest rank, any numbers
    return {"n": len(ordered), "p50_ms": percentile(ordered, 0.50),
            "p95_ms": percentile(ordered, 0.95), "p99_ms": percentile(ordered, 0.99),
            "max_ms": ordered[-1] if ordered else float("nan")}


def write_runs(lab_chain: Chain, experiment: str, instrument: str, count: int,
               rate: float) -> dict[str, float]:
    """Complete `count` runs, one transaction each, paced at `rate`/s: run id -> commit ms."""
    committed: dict[str, float] = {}
    interval = 1.0 / rate
    with psycopg.connect(lab_chain.database_url) as conn:
        start = time.monotonic()
        for index in range(count):
            # pace against the schedule, not the previous write: a slow commit is not
            # followed by a gap, so the offered rate stays the one asked for
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            run_id = f"run-{uuid.uuid4().hex[:12]}"
            with conn.transaction():
                conn.execute(
                    "INSERT INTO public.runs (id, experiment_id, instrument_id, status, "
                    "started_at, finished_at, result) VALUES (%s, %s, %s, 'completed', "
                    "now() - interval '1 minute', now(), %s)",
                    (run_id, experiment, instrument, json.dumps(PEAKS)))
            committed[run_id] = time.time() * 1000
        committed["__offered_s"] = time.monotonic() - start
    return committed


def job_rows(lab_chain: Chain, rule_id: str) -> list[tuple[str, str, float]]:
    """(run id, job key, started_at ms) of the rule's started jobs; the run id is argv[1]."""
    return execute(lab_chain.database_url,
                   "SELECT command ->> 1, job_key, extract(epoch FROM started_at) * 1000 "
                   "FROM public.jobs WHERE rule_id = %s AND started_at IS NOT NULL", (rule_id,))


def job_starts(lab_chain: Chain, rule_id: str) -> dict[str, float]:
    return {row[0]: float(row[2]) for row in job_rows(lab_chain, rule_id)}


def stamp_on_arrival(bootstrap: str, topic: str) -> None:
    """LogAppendTime on `topic`: created so when missing (the connector creates its topics
    on the first change of a table), else its config changed."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        create_log_append_topics(bootstrap, [topic])
        return
    entry = ConfigEntry("message.timestamp.type", "LogAppendTime",
                        incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


def cdc_arrivals(lab_chain: Chain, runs: set[str]) -> dict[str, float]:
    """run id -> broker (LogAppendTime) ms of the connector's record of its INSERT."""
    topic = f"{lab_chain.name}.public.runs"
    admin = AdminClient({"bootstrap.servers": lab_chain.bootstrap})
    partitions = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer = Consumer({"bootstrap.servers": lab_chain.bootstrap, "check.crcs": False,
                         "group.id": f"bench-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    found: dict[str, float] = {}
    try:
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            consumer.assign([TopicPartition(topic, partition, low)])
            seen = low
            while seen < high and (message := consumer.poll(10)) is not None:
                seen = (message.offset() or 0) + 1
                # the Avro key is the primary key: a run id of ours, or another writer's row
                match = RUN_ID.search(message.key() or b"")
                if match and match.group().decode() in runs:
                    found.setdefault(match.group().decode(), float(message.timestamp()[1]))
    finally:
        consumer.close()
    return found


def decision_times(lab_chain: Chain,
                   run_of_key: dict[str, str]) -> dict[str, tuple[float, float]]:
    """run id -> (`decided_at_ms` in the worker, broker LogAppendTime ms) of its fired decision.

    The worker publishes a fired decision after the job runner accepted the job (the record
    says whether it created one), so the broker time includes the launch; `decided_at_ms`
    is taken when the trigger decided, before the launch.
    """
    consumer = Consumer({"bootstrap.servers": lab_chain.bootstrap, "check.crcs": False,
                         "group.id": f"bench-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    found: dict[str, tuple[float, float]] = {}
    try:
        partition = TopicPartition(lab_chain.decisions_topic, 0)
        low, high = consumer.get_watermark_offsets(partition, timeout=10)
        consumer.assign([TopicPartition(lab_chain.decisions_topic, 0, low)])
        seen = low
        while seen < high:
            message = consumer.poll(10)
            if message is None:
                break
            seen = (message.offset() or 0) + 1
            decision = json.loads(message.value() or b"{}")
            run_id = run_of_key.get(str(decision.get("job_key")))
            if decision.get("outcome") == "fired" and run_id:
                found.setdefault(run_id, (float(decision["decided_at_ms"]),
                                          float(message.timestamp()[1])))
    finally:
        consumer.close()
    return found


def one_repetition(rate: float, count: int, tmp_dir: Path) -> dict[str, Any]:
    services = service_settings()
    with chain(services.database_url, services.kafka_bootstrap_servers, tmp_dir,
               otlp_endpoint=None, worker=False) as lab_chain:
        create_log_append_topics(lab_chain.bootstrap, [lab_chain.decisions_topic])
        stamp_on_arrival(lab_chain.bootstrap, f"{lab_chain.name}.public.runs")
        lab_chain.start_worker()
        worker = ProcessProbe(lab_chain.processes[-1].pid)
        tenant, instrument = lab_chain.tenant(), lab_chain.instrument()
        experiment = f"exp-{uuid.uuid4().hex[:12]}"
        execute(lab_chain.database_url, "INSERT INTO public.experiments (id, tenant_id, kind, "
                "submitted_by) VALUES (%s, %s, 'hplc', 'bench')", (experiment, tenant))
        lab_chain.wait_until_delivered("experiments", experiment)
        lab_chain.wait_until_delivered("instruments", instrument)
        rule_id = lab_chain.rule(tenant, JOB, timeout_s=60)

        warm = write_runs(lab_chain, experiment, instrument, WARMUP_RUNS, rate)
        warm.pop("__offered_s")
        wait_for(lambda: set(warm) <= set(job_starts(lab_chain, rule_id)), 120, "warm-up jobs")

        cpu_before, load_before = worker.cpu_seconds(), loadavg()
        committed = write_runs(lab_chain, experiment, instrument, count, rate)
        offered_s = committed.pop("__offered_s")
        wait_for(lambda: set(committed) <= set(job_starts(lab_chain, rule_id)),
                 120 + count / rate, "every measured run's job to start")
        cpu_s = worker.cpu_seconds() - cpu_before
        peak_mb = worker.peak_rss_mb()
        starts = job_starts(lab_chain, rule_id)
        decided = decision_times(lab_chain, {key: run for run, key, _ in
                                             job_rows(lab_chain, rule_id)})
        arrived = cdc_arrivals(lab_chain, set(committed))
        last_start = max(starts[r] for r in committed)
        first_commit = min(committed.values())
        return {
            "rate": rate, "runs": count, "offered_s": round(offered_s, 2),
            "events_per_s": round(count / max((last_start - first_commit) / 1000, 1e-3), 2),
            "commit_to_job_start": summary([starts[r] - committed[r] for r in committed]),
            "commit_to_cdc_record": summary([arrived[r] - committed[r] for r in committed
                                             if r in arrived]),
            "cdc_record_to_decided": summary([decided[r][0] - arrived[r] for r in committed
                                              if r in decided and r in arrived]),
            "commit_to_decided": summary([decided[r][0] - committed[r] for r in committed
                                          if r in decided]),
            "decided_to_job_start": summary([starts[r] - decided[r][0] for r in committed
                                             if r in decided]),
            "commit_to_decision_record": summary([decided[r][1] - committed[r]
                                                  for r in committed if r in decided]),
            "worker_cpu_s": round(cpu_s, 2), "worker_cpu_per_event_ms": round(
                1000 * cpu_s / count, 2), "worker_vmhwm_mb": round(peak_mb, 1),
            "loadavg_before": load_before, "loadavg_after": loadavg(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, action="append",
                        help="completed runs per second (repeatable; default 5 and 20)")
    parser.add_argument("--seconds", type=float, default=60, help="write phase length")
    parser.add_argument("--runs", type=int, help="runs per phase (instead of rate x seconds)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per rate")
    args = parser.parse_args()
    rates = args.rate or [5.0, 20.0]
    info = machine_info(service_settings().database_url)
    print(json.dumps({"machine": info, "job": JOB, "warmup_runs": WARMUP_RUNS}), flush=True)
    results: dict[float, list[dict[str, Any]]] = {}
    for rate in rates:
        count = args.runs or max(1, round(rate * args.seconds))
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
                result = one_repetition(rate, count, Path(tmp))
            print(json.dumps(result), flush=True)
            results.setdefault(rate, []).append(result)
    for rate, runs in results.items():
        print(json.dumps({"rate": rate, "repetitions": len(runs), "median": medians(runs)}))


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def of(path: str) -> float:
        values = []
        for run in runs:
            value: Any = run
            for part in path.split("."):
                value = value[part]
            values.append(value)
        return median(values)

    paths = [f"{kind}.{p}" for kind in ("commit_to_job_start", "commit_to_cdc_record",
                                                 "cdc_record_to_decided", "commit_to_decided",
                                                 "decided_to_job_start",
                                                 "commit_to_decision_record")
             for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
    paths += ["events_per_s", "worker_cpu_s", "worker_cpu_per_event_ms", "worker_vmhwm_mb"]
    return {path: of(path) for path in paths}


if __name__ == "__main__":
    main()
