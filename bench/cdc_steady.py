"""Latency under a steady load: pgbench at 2,000 single-row INSERT transactions/s.

    .venv/bin/python bench/cdc_steady.py [--rate 2000] [--seconds 30] [--serializer avro|json]

Latency of a record = broker timestamp (LogAppendTime) - its commit time
(`source.ts_ms`). Prints p50/p95/p99/p99.9/max over all records of the measured phase,
how many records took over 15 ms and in how many distinct seconds (bunched = stalls),
the rate pgbench achieved, the connector's CPU seconds and VmHWM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from urllib.parse import urlsplit

from cdc_common import Bench, machine, percentile


def pgbench(bench: Bench, rate: int, seconds: int) -> dict[str, int | float]:
    url = urlsplit(bench.database_url)
    script = (f"INSERT INTO {bench.table} (tenant, reading, note, qty) "
              "VALUES ('tenant-1', random(), 'steady row', 1);\n")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script)
    env = dict(os.environ, PGPASSWORD=url.password or "")
    out = subprocess.run(
        ["pgbench", "-n", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),
         "-U", url.username or "lab", "-c", "4", "-j", "2", "-R", str(rate), "-T", str(seconds),
         "-f", handle.name, url.path.lstrip("/") or "lab"],
        env=env, capture_output=True, text=True, check=True)
    os.unlink(handle.name)
    tps = re.search(r"tps = ([0-9.]+)", out.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
    return {"tps": float(tps.group(1)) if tps else float("nan"),
            "transactions": int(done.group(1)) if done else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--serializer", default="avro", choices=["avro", "json"])
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}))
    bench = Bench(args.serializer, "steady")
    bench.setup()
    try:
        bench.start()
        pgbench(bench, args.rate, 3)  # warm-up
        warm = bench.end_offset()
        bench.wait_for_offset(warm)
        cpu_before = bench.cpu_seconds()
        load = pgbench(bench, args.rate, args.seconds)
        bench.wait_for_offset(warm + int(load["transactions"]))
        cpu = bench.cpu_seconds() - cpu_before
        peak_mb = bench.peak_rss_mb()
        assert bench.stop() == 0
        stamps = bench.read_back(warm, warm + int(load["transactions"]))
        latencies = sorted(broker - commit for broker, commit in stamps)
        # is the tail a few stalls (slow records bunched in a few seconds) or spread out?
        slow_seconds = {commit // 1000 for broker, commit in stamps if broker - commit > 15}
        print(json.dumps({
            "serializer": args.serializer, "target_tps": args.rate, "pgbench_tps": load["tps"],
            "records": len(latencies), "p50_ms": percentile(latencies, 0.50),
            "p95_ms": percentile(latencies, 0.95), "p99_ms": percentile(latencies, 0.99),
            "p999_ms": percentile(latencies, 0.999), "max_ms": latencies[-1],
            "over_15ms": sum(1 for latency in latencies if latency > 15),
            "seconds_with_over_15ms": len(slow_seconds), "connector_cpu_s": round(cpu, 2),
            "connector_vmhwm_mb": round(peak_mb, 1)}))
    finally:
        bench.teardown()


if __name__ == "__main__":
    main()
