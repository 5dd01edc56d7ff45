"""Where the CPU of one bulk run goes, per row: connector threads, walsender, broker.

    .venv/bin/python bench/cdc_cpu_split.py [--serializer json|avro] [--rows 200000]

Runs the bulk phase of bench/cdc_bulk.py (own table, 1,000-row transactions) and
reads utime+stime from /proc before and after it for: each thread of the connector
process, grouped by name (MainThread = `python`, librdkafka's `rdk:*` threads, ...),
the PostgreSQL walsender serving the connector's slot, and the stack's Kafka broker
(.state/pids/kafka.pid). Prints microseconds of CPU per row for each. A py-spy profile
of the main thread tells what it spends its share on (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from cdc_bulk import insert_rows
from cdc_common import REPO, Bench

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(stat_path: Path) -> float:
    fields = stat_path.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _threads(pid: int) -> Counter[str]:
    out: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            out[name] += _cpu(task / "stat")
        except OSError:
            continue  # the thread ended meanwhile
    return out


def _sample(connector: int, walsender: int, broker: int) -> Counter[str]:
    sample = Counter({f"connector {name}": cpu for name, cpu in _threads(connector).items()})
    sample["walsender"] = _cpu(Path(f"/proc/{walsender}/stat"))
    sample["kafka broker"] = sum(_threads(broker).values())
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serializer", default="json", choices=["json", "avro"])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    bench = Bench(args.serializer, "split")
    bench.setup()
    try:
        bench.start()
        insert_rows(bench, 5_000)
        bench.wait_for_offset(5_000)
        assert bench.proc is not None
        (walsender,), = bench.sql("SELECT active_pid FROM pg_replication_slots "
                                  "WHERE slot_name = %s", (bench.name,))
        broker = int((REPO / ".state" / "pids" / "kafka.pid").read_text().split()[0])
        before = _sample(bench.proc.pid, walsender, broker)
        insert_rows(bench, args.rows)
        bench.wait_for_offset(5_000 + args.rows)
        after = _sample(bench.proc.pid, walsender, broker)
        bench.stop()
    finally:
        bench.teardown()
    per_row = {name: round((after[name] - before.get(name, 0.0)) * 1e6 / args.rows, 1)
               for name in after}
    per_row = {k: v for k, v in sorted(per_row.items(), key=lambda kv: -kv[1]) if v > 0}
    print(json.dumps({"serializer": args.serializer, "rows": args.rows,
                      "cpu_us_per_row": per_row}))


if __name__ == "__main__":
    main()
