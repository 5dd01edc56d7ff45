"""Replay throughput: scan + decode + filter (what ls and the dry run do) and re-drive.

    .venv/bin/python bench/replay_scan.py --records 20000

Produces `--records` Debezium-shaped Avro change events (runs-like rows, a
traceparent header each) into a fresh topic, then measures on the local stack:

1. scan: read + decode (Avro, schema from the lab-DB registry) + `--filter` over
   every record, in records/s and in records per CPU second of this process
   (librdkafka's threads included: steadier than wall time on a shared machine);
2. dry run: the same plus enrich/route/decide with the lab DB as reference, on the
   first `--dry-run-records`;
3. re-drive: `--execute` into a fresh target topic (new trace + headers per
   record, checkpoints recorded in labstream.replays), in records/s.

Topics it creates are deleted at the end. Needs `labstream stack up` and migrations.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from replay_helpers import RunSpec, delete_topics, produce_runs

from base.settings import service_settings
from replay import runner
from replay.dryrun import dry_run
from replay.redrive import RedriveOptions
from replay.selection import build_selection

T = TypeVar("T")
FILTER = 'after.kind == "hplc" and after.status == "completed" and op in ("c", "u")'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--dry-run-records", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the scan and the dry run (top functions by own time)")
    parser.add_argument("--no-redrive", action="store_true", help="skip the re-drive")
    args = parser.parse_args()
    services = service_settings()
    prefix = f"bench_replay_{secrets.token_hex(4)}"
    now_ms = int(time.time() * 1000)
    specs = [
        RunSpec(f"run-{i}", "hplc" if i % 2 else "lc-ms", "completed" if i % 3 else "running",
                partition=i % 4, timestamp_ms=now_ms - (args.records - i))
        for i in range(args.records)
    ]
    started = time.perf_counter()
    topic, _ = produce_runs(services.kafka_bootstrap_servers, services.database_url, prefix,
                            specs, partitions=4)
    print(f"produced {args.records} records in {time.perf_counter() - started:.1f}s ({topic})")
    target = f"replay.{prefix}"
    try:
        with runner.Session() as session:
            selection = build_selection(topics=[topic], filter_text=FILTER)
            started, cpu = time.perf_counter(), time.process_time()
            scan = runner.start_scan(session, selection)
            first: list[float] = []
            matched = _profiled(args.profile, lambda: _count(scan.records(), first))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            print(f"scan+decode+filter: {scan.stats.scanned} records in {elapsed:.2f}s = "
                  f"{scan.stats.scanned / elapsed:,.0f} records/s (matched {matched}); "
                  f"CPU {cpu:.2f}s = {scan.stats.scanned / cpu:,.0f} records per CPU second; "
                  f"first record after {(first[0] - started) * 1000:.0f} ms (plan + connect), "
                  f"then {scan.stats.scanned / (started + elapsed - first[0]):,.0f} records/s")

            dry_selection = build_selection(topics=[topic], limit=args.dry_run_records)
            started, cpu = time.perf_counter(), time.process_time()
            report = _profiled(args.profile,
                               lambda: dry_run(session, dry_selection, reference_source="db"))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            done = len(report.outcomes)
            print(f"dry run (db reference): {done} records in {elapsed:.2f}s = "
                  f"{done / elapsed:,.0f} records/s; CPU {cpu:.2f}s = "
                  f"{done / cpu:,.0f} records per CPU second")

            if args.no_redrive:
                return
            started = time.perf_counter()
            row, _ = runner.execute(session, build_selection(topics=[topic]),
                                    runner.with_batching(RedriveOptions(target_topic=target)))
            elapsed = time.perf_counter() - started
            print(f"re-drive: {row.produced} records in {elapsed:.2f}s = "
                  f"{row.produced / elapsed:,.0f} records/s (replay {row.id})")
    finally:
        delete_topics(services.kafka_bootstrap_servers, topic, target)


def _count(records: Iterable[object], first: list[float]) -> int:
    """How many records; `first` gets the moment the first one arrived."""
    count = 0
    for _ in records:
        if not count:
            first.append(time.perf_counter())
        count += 1
    return count


def _profiled(enabled: bool, work: Callable[[], T]) -> T:
    if not enabled:
        return work()
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(work)
    finally:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(22)


if __name__ == "__main__":
    main()
