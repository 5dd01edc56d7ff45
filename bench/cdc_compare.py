"""labstream's CDC connector side by side with real Debezium, on this machine.

    .venv/bin/python bench/cdc_compare.py
        [--systems labstream-avro,labstream-json,debezium,debezium-tuned] [--rows 200000]
        [--rate 2000] [--seconds 30] [--clients 8] [--runs 3] [--phases bulk,steady]
        [--table own|reference]

Method (/work/shared/BENCHMARKING.md): one system at a time, each run with its own
table, slot, publication and topic prefix; topics pre-created with LogAppendTime;
a 5,000-row warm-up; then
  bulk:   --rows rows in transactions of 1,000; rate = rows / (first commit ->
          broker timestamp of the last record);
  steady: pgbench -R --rate -T --seconds, one single-row INSERT per transaction;
          latency = broker timestamp - source.ts_ms, p50/p95/p99/max of all records.
Topics are read back after the phases. CPU seconds (per phase) and VmHWM of the
process under test. Rounds interleave the systems (run 1 of each, then run 2 ...).
Prints a table; writes every run and the medians to .state/bench/cdc_compare-<utc>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
from cdc_systems import STATE, SYSTEMS, build_system
from common import (
    ProcessProbe,
    bulk_rate,
    code_fingerprint,
    create_log_append_topics,
    delete_topics,
    drop_slot_and_publication,
    latency_summary,
    loadavg,
    machine_info,
    median,
    read_back,
    sql,
    wait_for_offset,
)

ROWS_PER_TX = 1_000
WARMUP_ROWS = 5_000
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
# --table own: this bench's table; --table reference: /work/shared/BENCHMARKING.md's
# bench_rows (jsonb payload, timestamptz default clock_timestamp()), the one Debezium
# was first measured with there. (DDL, bulk INSERT ... SELECT over g, steady INSERT)
SHAPES = {
    "own": (
        """CREATE TABLE {table} (
    id bigserial PRIMARY KEY, tenant text NOT NULL, reading double precision,
    note text, qty integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())""",
        "INSERT INTO {table} (tenant, reading, note, qty) "
        "SELECT 'tenant-' || (g % 7), g * 0.5, 'bulk row ' || g, g "
        "FROM generate_series(1, {rows}) g",
        "INSERT INTO {table} (tenant, reading, note, qty) "
        "VALUES ('tenant-1', random(), 'steady row', 1);",
    ),
    "reference": (
        """CREATE TABLE {table} (
    id bigserial PRIMARY KEY, tenant text, kind text, status text, payload jsonb,
    n integer, updated_at timestamptz DEFAULT clock_timestamp())""",
        "INSERT INTO {table} (tenant, kind, status, payload, n) "
        "SELECT 'tenant-' || (g % 7), 'kind-' || (g % 5), 'queued', jsonb_build_object("
        "'seq', g, 'sku', 'SKU-' || (g % 997), 'qty', 1 + g % 7, 'note', md5(g::text)), g "
        "FROM generate_series(1, {rows}) g",
        "INSERT INTO {table} (tenant, kind, status, payload, n) VALUES ('tenant-1', 'kind-1', "
        "'queued', jsonb_build_object('seq', 1, 'sku', 'SKU-1', 'qty', 1, "
        "'note', md5(random()::text)), 1);",
    ),
}
SHAPE = SHAPES["own"]  # set from --table in main()


def insert_bulk(database_url: str, table: str, rows: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(rows // ROWS_PER_TX):
            conn.execute(SHAPE[1].format(table=table, rows=ROWS_PER_TX))


def pgbench(database_url: str, table: str, rate: int, seconds: int, clients: int) -> dict[str, Any]:
    url = urlsplit(database_url)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(SHAPE[2].format(table=table) + "\n")
    command = [
        PGBENCH,
        "-n",
        "-h",
        url.hostname or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "lab",
        "-c",
        str(clients),
        "-j",
        "2",
        "-R",
        str(rate),
        "-T",
        str(seconds),
        "-f",
        script.name,
        url.path.lstrip("/") or "lab",
    ]
    try:
        out = subprocess.run(
            command,
            env=dict(os.environ, PGPASSWORD=url.password or ""),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script.name)
    tps = re.search(r"tps = ([0-9.]+)", out.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
    return {
        "pgbench_tps": round(float(tps.group(1)), 1) if tps else float("nan"),
        "transactions": int(done.group(1)) if done else 0,
    }


def run_once(label: str, args: argparse.Namespace, round_no: int) -> dict[str, Any]:
    name = f"bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    table, topic = f"public.{name}", f"{name}.public.{name}"
    db, kafka = args.database_url, args.bootstrap
    profile = STATE / f"{name}.prof" if args.profile and label.startswith("labstream") else None
    system = build_system(label, name, table, db, kafka, profile)
    sql(db, SHAPE[0].format(table=table))
    create_log_append_topics(kafka, [topic])
    result: dict[str, Any] = {
        "system": label,
        "round": round_no,
        "name": name,
        "loadavg": loadavg(),
        "code": code_fingerprint("connectors", "labstream", "tracing"),
    }
    try:
        probe = ProcessProbe(system.start())
        insert_bulk(db, table, WARMUP_ROWS)  # warm-up: metadata, schemas, JIT, caches
        offset = WARMUP_ROWS
        wait_for_offset(kafka, topic, offset, alive=system.alive)
        ranges: dict[str, tuple[int, int]] = {}
        if "bulk" in args.phases:
            cpu = probe.cpu_seconds()
            insert_bulk(db, table, args.rows)
            wait_for_offset(kafka, topic, offset + args.rows, alive=system.alive)
            result["bulk_cpu_s"] = round(probe.cpu_seconds() - cpu, 2)
            ranges["bulk"] = (offset, offset + args.rows)
            offset += args.rows
        if "steady" in args.phases:
            warm = pgbench(db, table, args.rate, 2, args.clients)  # pacing warm-up
            offset += warm["transactions"]
            wait_for_offset(kafka, topic, offset, alive=system.alive)
            cpu = probe.cpu_seconds()
            load = pgbench(db, table, args.rate, args.seconds, args.clients)
            wait_for_offset(kafka, topic, offset + load["transactions"], alive=system.alive)
            result["steady_cpu_s"] = round(probe.cpu_seconds() - cpu, 2)
            result["pgbench_tps"] = load["pgbench_tps"]
            ranges["steady"] = (offset, offset + load["transactions"])
            offset += load["transactions"]
        result["vmhwm_mb"] = round(probe.peak_rss_mb(), 1)
        result["exit_code"] = system.stop()
        decode = system.commit_ms_decoder()
        if "bulk" in ranges:
            result.update(
                {
                    f"bulk_{k}": v
                    for k, v in bulk_rate(read_back(kafka, topic, *ranges["bulk"], decode)).items()
                }
            )
        if "steady" in ranges:
            result.update(
                {
                    f"steady_{k}": v
                    for k, v in latency_summary(
                        read_back(kafka, topic, *ranges["steady"], decode)
                    ).items()
                }
            )
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        system.stop()
        drop_slot_and_publication(db, name, name)
        system.cleanup()
        sql(db, f"DROP TABLE IF EXISTS {table}")
        if not args.keep_topics:
            # <prefix>.message: logical decoding messages other sessions emitted meanwhile
            delete_topics(kafka, [topic, f"__labstream-heartbeat.{name}", f"{name}.message"])
    return result


# result field -> column header of the printed table
COLUMNS = {
    "bulk_rows_per_s": "rows/s",
    "bulk_commit_span_s": "commit span s",
    "bulk_cpu_s": "bulk cpu s",
    "steady_p50_ms": "p50 ms",
    "steady_p95_ms": "p95 ms",
    "steady_p99_ms": "p99 ms",
    "steady_max_ms": "max ms",
    "steady_cpu_s": "steady cpu s",
    "pgbench_tps": "tps",
    "vmhwm_mb": "VmHWM MB",
}
SUMMARY_FIELDS = list(COLUMNS)


def summarize(runs: list[dict[str, Any]], labels: list[str]) -> dict[str, dict[str, float]]:
    medians: dict[str, dict[str, float]] = {}
    for label in labels:
        good = [r for r in runs if r["system"] == label and "error" not in r]
        medians[label] = {f: median(r[f] for r in good if f in r) for f in SUMMARY_FIELDS}
        medians[label]["runs"] = len(good)
    return medians


def print_table(runs: list[dict[str, Any]], medians: dict[str, dict[str, float]]) -> None:
    print(f"{'system':<16}{'run':>5}" + "".join(f"{c:>14}" for c in COLUMNS.values()))
    for run in runs:
        cells = "".join(f"{run.get(f, float('nan')):>14}" for f in SUMMARY_FIELDS)
        print(f"{run['system']:<16}{run['round']:>5}{cells}  {run.get('error', '')}")
    for label, values in medians.items():
        cells = "".join(f"{values[f]:>14.6g}" for f in SUMMARY_FIELDS)
        print(f"{label:<16}{'med':>5}{cells}")
    tuned = medians.get("debezium-tuned", {}).get("bulk_rows_per_s", float("nan"))
    for label in ("labstream-json", "labstream-avro"):
        ours = medians.get(label, {}).get("bulk_rows_per_s", float("nan"))
        if ours == ours and tuned == tuned:
            print(f"{label} bulk / debezium-tuned bulk = {ours / tuned:.2f}x")


def parse_args() -> argparse.Namespace:
    from base.settings import service_settings

    services = service_settings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, from: {', '.join(SYSTEMS)}"
    )
    parser.add_argument("--rows", type=int, default=200_000, help="bulk rows (multiple of 1000)")
    parser.add_argument("--rate", type=int, default=2_000, help="steady tx/s (pgbench -R)")
    parser.add_argument("--seconds", type=int, default=30, help="steady duration (pgbench -T)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench -c")
    parser.add_argument("--runs", type=int, default=3, help="rounds over all systems")
    parser.add_argument("--phases", default="bulk,steady", help="bulk,steady or one of them")
    parser.add_argument("--table", default="own", choices=sorted(SHAPES),
                        help="own: this bench's table; reference: BENCHMARKING.md's bench_rows")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run labstream under cProfile (.state/bench/<name>.prof)",
    )
    parser.add_argument(
        "--keep-topics", action="store_true", help="keep the runs' topics (to inspect records)"
    )
    parser.add_argument("--database-url", default=services.database_url)
    parser.add_argument("--bootstrap", default=services.kafka_bootstrap_servers)
    args = parser.parse_args()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {list(SYSTEMS)}")
    args.phases = {p.strip() for p in args.phases.split(",")}
    args.rows -= args.rows % ROWS_PER_TX
    return args


def main() -> None:
    global SHAPE
    args = parse_args()
    SHAPE = SHAPES[args.table]
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(args.database_url),
        "settings": {
            k: sorted(v) if isinstance(v, set) else v
            for k, v in vars(args).items()
            if k != "database_url"
        },
        "systems": {label: SYSTEMS[label] for label in args.systems},
        "runs": [],
    }
    print(json.dumps(report["machine"]))
    out = STATE / f"cdc_compare-{started:%Y%m%dT%H%M%S}.json"
    STATE.mkdir(parents=True, exist_ok=True)
    for round_no in range(1, args.runs + 1):
        for label in args.systems:
            run = run_once(label, args, round_no)
            print(json.dumps(run), flush=True)
            report["runs"].append(run)
            report["medians"] = summarize(report["runs"], args.systems)
            out.write_text(json.dumps(report, indent=2))
            time.sleep(2)  # let the broker and PostgreSQL settle between systems
    print_table(report["runs"], report["medians"])
    print(f"results: {out}")


if __name__ == "__main__":
    main()
