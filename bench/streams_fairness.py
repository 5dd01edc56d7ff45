"""Fairness under a burst (issue 12): one tenant floods at 10x the simulator's default
rate while another submits one change every 2 s; the small tenant's commit -> job start.

    .venv/bin/python bench/streams_fairness.py --seconds 60 --flood-rate 50

One worker with its job runner (`labstream worker`, started by
tests/integration/streams_harness.py), CDC-shaped `runs` changes produced straight to
its topics with the commit time in `source.ts_ms`. Every change fires one job: the
flood's jobs sleep 1 s (so its backlog builds up in the queue), the small tenant's run
`/bin/true`. Per small-tenant change: commit -> `jobs.started_at` (one host, one
clock). Also: the flood's drain time (last flood job finished - last flood change
sent) and the worker's CPU. `--tree DIR` runs the worker from another checkout (e.g.
the code before issue 12) for a side-by-side run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

import psycopg  # noqa: E402
from streams_harness import WorkerHarness, rule_row, run_row  # noqa: E402

from base.settings import service_settings  # noqa: E402
from bench.common import ProcessProbe, median, percentile  # noqa: E402

TENANTS = {"flood": "exp-flood", "small": "exp-small"}


def reference(harness: WorkerHarness) -> None:
    for tenant, experiment in TENANTS.items():
        harness.send("tenants", "c", {"id": tenant, "name": tenant, "tier": "standard"})
        harness.send("experiments", "c", {"id": experiment, "tenant_id": tenant,
                                          "kind": "hplc", "status": "running", "title": "t",
                                          "submitted_by": "ana", "protocol": "{}",
                                          "priority": 5})
    harness.send("instruments", "c", {"id": "hplc-01", "name": "HPLC #1", "kind": "hplc",
                                      "location": "a", "status": "running"})


def run_bench(seconds: float, flood_rate: float, small_every_s: float,
              tree: str | None) -> dict[str, object]:
    settings = service_settings()
    name = f"fair-{uuid.uuid4().hex[:8]}"
    env = {"LABSTREAM_JOBS_MAX_RUNNING": "32"}
    if tree:
        env["PYTHONPATH"] = tree
    with tempfile.TemporaryDirectory() as tmp:
        harness = WorkerHarness(name, settings.kafka_bootstrap_servers, Path(tmp),
                                launch_jobs=True, extra_env=env)
        rules = {tenant: f"{name}-{tenant}" for tenant in TENANTS}
        try:
            reference(harness)
            harness.send("trigger_rules", "c", rule_row(
                rules["flood"], "run.failed", command=["/bin/sleep", "1"], tenant_id="flood")
                | {"max_concurrency": 16})
            harness.send("trigger_rules", "c", rule_row(
                rules["small"], "run.failed", command=["/bin/true", "{payload.run_id}"],
                tenant_id="small"))
            harness.flush()
            worker = harness.start_worker()
            wait_ready(settings.database_url, harness, rules["small"])
            probe = ProcessProbe(worker.pid)
            cpu_before = probe.cpu_seconds()
            sent_small = pace(harness, seconds, flood_rate, small_every_s)
            flood_sent_end = time.time()
            small, flood = wait_jobs(settings.database_url, rules, len(sent_small) + 1,
                                     int(seconds * flood_rate))
            cpu_s, peak_mb = probe.cpu_seconds() - cpu_before, probe.peak_rss_mb()
        finally:
            harness.stop_all()
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                conn.execute("DELETE FROM public.jobs WHERE rule_id = ANY(%s)",
                             (list(rules.values()),))
    latencies: list = sorted((small[run_id] - committed) * 1000 for run_id, committed
                       in sent_small.items() if run_id in small)
    to_queue: list = sorted((flood["queued"][run_id] - committed) * 1000  # type: ignore[index]
                            for run_id, committed in sent_small.items() if run_id in small)
    return {
        "command": " ".join(sys.argv),
        "small_commit_to_queued_p50_ms": round(median(to_queue), 1) if to_queue else None,
        "tree": tree or str(REPO), "seconds": seconds,
        "flood_rate": flood_rate, "small_every_s": small_every_s,
        "small_jobs": len(latencies), "small_sent": len(sent_small),
        "small_p50_ms": round(median(latencies), 1) if latencies else None,
        "small_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "small_max_ms": round(latencies[-1], 1) if latencies else None,
        "flood_jobs_finished": flood["finished"],
        "flood_drain_s": round(flood["last_finished"] - flood_sent_end, 1)
        if flood["last_finished"] else None,
        "worker_cpu_s": round(cpu_s, 1), "worker_peak_rss_mb": round(peak_mb),
    }


def wait_ready(database_url: str, harness: WorkerHarness, rule_id: str) -> None:
    """One small-tenant change all the way to its job: the worker is up, rules loaded."""
    harness.send("runs", "u", run_row("warmup", "failed", experiment_id=TENANTS["small"]),
                 run_row("warmup", "running", experiment_id=TENANTS["small"]))
    harness.flush()
    deadline = time.monotonic() + 120
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM public.jobs WHERE rule_id = %s",
                            (rule_id,)).fetchone():
                return
            time.sleep(0.2)
    raise SystemExit("the worker never started the warm-up job")


def pace(harness: WorkerHarness, seconds: float, flood_rate: float,
         small_every_s: float) -> dict[str, float]:
    """Send the flood and the small tenant's changes; returns small run id -> commit time."""
    began = time.time()
    sent_small: dict[str, float] = {}
    flood_sent = 0
    next_small = began
    lsn = 1_000_000
    while (now := time.time()) - began < seconds:
        due = int((now - began) * flood_rate)
        while flood_sent < due:
            run_id = f"flood-{flood_sent}"
            lsn += 1
            harness.send("runs", "u", run_row(run_id, "failed", experiment_id="exp-flood"),
                         run_row(run_id, "running", experiment_id="exp-flood"), lsn=lsn,
                         commit_ms=int(now * 1000))
            flood_sent += 1
        if now >= next_small:
            run_id = f"small-{len(sent_small)}"
            lsn += 1
            harness.send("runs", "u", run_row(run_id, "failed", experiment_id="exp-small"),
                         run_row(run_id, "running", experiment_id="exp-small"), lsn=lsn,
                         commit_ms=int(now * 1000))
            sent_small[run_id] = now
            next_small += small_every_s
        harness.producer.poll(0)
        time.sleep(0.005)
    harness.flush()
    return sent_small


def wait_jobs(database_url: str, rules: dict[str, str], small_count: int,
              flood_count: int) -> tuple[dict[str, float], dict[str, float]]:
    deadline = time.monotonic() + 240  # the flood's drain, at most
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            small_rows = conn.execute(
                "SELECT command->>1, extract(epoch FROM started_at), "
                "extract(epoch FROM created_at) FROM public.jobs "
                "WHERE rule_id = %s AND started_at IS NOT NULL", (rules["small"],)).fetchall()
            flood_row = conn.execute(
                "SELECT count(*), extract(epoch FROM max(finished_at)) FROM public.jobs "
                "WHERE rule_id = %s AND finished_at IS NOT NULL", (rules["flood"],)).fetchone()
            assert flood_row is not None
            if len(small_rows) >= small_count and flood_row[0] >= flood_count:
                break
            time.sleep(0.5)
    small = {run_id: float(started) for run_id, started, _ in small_rows}
    queued = {run_id: float(created) for run_id, _, created in small_rows}
    return small, {"finished": flood_row[0], "last_finished": float(flood_row[1] or 0),
                   "queued": queued}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--flood-rate", type=float, default=50, help="changes/s (10 x 5)")
    parser.add_argument("--small-every", type=float, default=2.0)
    parser.add_argument("--tree", default=None, help="run the worker from this checkout")
    args = parser.parse_args()
    os.environ.setdefault("LABSTREAM_LOG_LEVEL", "WARNING")
    print(json.dumps(run_bench(args.seconds, args.flood_rate, args.small_every, args.tree)))


if __name__ == "__main__":
    main()
