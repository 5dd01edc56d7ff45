"""Would two processes (one per partition set) scan or dry-run faster than one?

    .venv/bin/python bench/replay_two_processes.py --records 100000 --rounds 3

Produces `--records` run changes into 4 partitions, then per round and mode (scan with
the filter of bench/replay_scan.py; dry run with `--reference db`) runs one process
over partitions 0-3, then two processes at once over 0,1 and 2,3 (`--offsets`), each
timing itself from its session's start. Prints records/s (the first start to the last
end) and records per CPU second (all processes), medians over rounds.

What it measures is an upper bound for a two-process replay: the processes do not
hand their records or outcomes to a parent, nor merge a report.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from replay_helpers import RunSpec, delete_topics, produce_runs

from base.settings import service_settings

FILTER = 'after.kind == "hplc" and after.status == "completed" and op in ("c", "u")'
CHILD = """
import json, sys, time
from replay import dryrun, runner
from replay.selection import build_selection
topic, parts, mode, text = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
with runner.Session() as session:
    offsets = [f"{topic}:{part}:0-" for part in parts]
    start, cpu = time.time(), time.process_time()
    if mode == "scan":
        selection = build_selection(offsets=offsets, filter_text=text)
        count = sum(1 for _ in runner.start_scan(session, selection).records())
    else:
        report = dryrun.dry_run(session, build_selection(offsets=offsets), reference_source="db")
        count = len(report.outcomes)
    print(json.dumps({"start": start, "end": time.time(), "cpu": time.process_time() - cpu}))
"""


def run(topic: str, records: int, groups: list[str], mode: str) -> tuple[float, float]:
    processes = [subprocess.Popen([sys.executable, "-c", CHILD, topic, group, mode, FILTER],
                                  stdout=subprocess.PIPE, text=True) for group in groups]
    results = [json.loads(process.communicate()[0].strip().splitlines()[-1])
               for process in processes]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return records / wall, records / sum(r["cpu"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    services = service_settings()
    now_ms = int(time.time() * 1000)
    specs = [RunSpec(f"run-{i}", "hplc" if i % 2 else "lc-ms",
                     "completed" if i % 3 else "running", partition=i % 4,
                     timestamp_ms=now_ms - (args.records - i)) for i in range(args.records)]
    topic, _ = produce_runs(services.kafka_bootstrap_servers, services.database_url,
                            f"bench_two_{secrets.token_hex(4)}", specs, partitions=4)
    try:
        for mode in ("scan", "dry run"):
            measured: dict[str, list[tuple[float, float]]] = {"one": [], "two": []}
            for _ in range(args.rounds):
                measured["one"].append(run(topic, args.records, ["0,1,2,3"], mode))
                measured["two"].append(run(topic, args.records, ["0,1", "2,3"], mode))
            for count, rates in measured.items():
                print(f"{mode}, {count} process(es): "
                      f"{statistics.median(r[0] for r in rates):,.0f} records/s, "
                      f"{statistics.median(r[1] for r in rates):,.0f} per CPU second "
                      f"(rounds: {', '.join(f'{r[0]:,.0f}' for r in rates)})")
    finally:
        delete_topics(services.kafka_bootstrap_servers, topic)


if __name__ == "__main__":
    main()
