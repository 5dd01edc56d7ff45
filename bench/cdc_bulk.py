"""Bulk rate: 200,000 rows in transactions of 1,000 rows, through the connector.

    .venv/bin/python bench/cdc_bulk.py [--serializer avro|json] [--rows 200000] [--runs 3]

Rate = rows / (first commit -> broker timestamp of the last record), after a warm-up
of 5,000 rows. Prints one JSON line per run (rate, connector CPU seconds, VmHWM).
"""

from __future__ import annotations

import argparse
import json
import time

from cdc_common import Bench, machine

ROWS_PER_TX = 1_000


def insert_rows(bench: Bench, rows: int) -> None:
    import psycopg

    with psycopg.connect(bench.database_url, autocommit=True) as conn:
        for _ in range(rows // ROWS_PER_TX):
            conn.execute(
                f"INSERT INTO {bench.table} (tenant, reading, note, qty) "
                "SELECT 'tenant-' || (g % 7), g * 0.5, 'bulk row ' || g, g "
                f"FROM generate_series(1, {ROWS_PER_TX}) g")


def run_once(serializer: str, rows: int) -> dict[str, object]:
    bench = Bench(serializer, "bulk")
    bench.setup()
    try:
        bench.start()
        insert_rows(bench, 5_000)  # warm-up: topic metadata, schemas, caches
        bench.wait_for_offset(5_000)
        cpu_before = bench.cpu_seconds()
        started = time.monotonic()
        insert_rows(bench, rows)
        bench.wait_for_offset(5_000 + rows)
        wall = time.monotonic() - started
        cpu = bench.cpu_seconds() - cpu_before
        peak_mb = bench.peak_rss_mb()
        assert bench.stop() == 0
        stamps = bench.read_back(5_000, 5_000 + rows)
        first_commit = min(commit for _, commit in stamps)
        last_arrival = max(broker for broker, _ in stamps)
        seconds = (last_arrival - first_commit) / 1000
        return {"serializer": serializer, "rows": rows, "rows_per_s": round(rows / seconds),
                "seconds": round(seconds, 2), "wall_s": round(wall, 2),
                "connector_cpu_s": round(cpu, 2), "connector_vmhwm_mb": round(peak_mb, 1)}
    finally:
        bench.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serializer", default="avro", choices=["avro", "json"])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}))
    for _ in range(args.runs):
        print(json.dumps(run_once(args.serializer, args.rows)), flush=True)


if __name__ == "__main__":
    main()
