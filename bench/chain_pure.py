"""µs per event of the pure stream chain: Avro decode, enrich, route, decide.

    .venv/bin/python bench/chain_pure.py --events 20000 --runs 5
    .venv/bin/python bench/chain_pure.py --profile decide     # cProfile of one stage
    PYTHONPATH=/tmp/h15-main .venv/bin/python /tmp/h15-main/../chain_pure.py  # old tree

No broker, no database: the records of `bench/streams_throughput.py` (an HPLC run
reaching `completed`, 3 peaks, one tenant-conditioned rule that fires) encoded with
`streams.fixtures.LabChanges`, then each stage timed on its own over all events, in
CPU µs per event (`time.process_time`), median and minimum of `--runs`:

- decode: `CdcDecoder.decode(key, value, ...)` (key + value Avro -> `ChangeRecord`);
- erd: `route(enrich(change, store))` then `decide(event, rules, now=...)` per event,
  the public functions `streams.agents` calls;
- erd_batch: `streams.chain.decide_many` on batches of 500 when the tree has it.

Only public names are imported, so the same file measures an older tree put first on
`PYTHONPATH` (side-by-side runs in docs/BENCHMARKS.md, "Pure chain").
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

RESULT = json.dumps({"peaks": [{"rt_min": 1.1, "area": 10.0, "height": 1.0},
                               {"rt_min": 2.2, "area": 20.0, "height": 2.0},
                               {"rt_min": 3.3, "area": 30.0, "height": 3.0}]})
RULE: dict[str, Any] = {
    "id": "bench", "tenant_id": None, "enabled": True, "event_kind": "hplc.completed",
    "condition": '{"tenant_id": "acme"}', "backend": "local", "image": None,
    "command": '["report", "{payload.run_id}", "{payload.peak_count}"]', "env": "{}",
    "timeout_s": 60, "max_concurrency": 4}
REFERENCE: list[tuple[str, dict[str, Any]]] = [
    ("tenants", {"id": "acme", "name": "Acme", "tier": "standard"}),
    ("experiments", {"id": "exp-1", "tenant_id": "acme", "kind": "hplc", "status": "running",
                     "title": "t", "submitted_by": "a", "protocol": "{}", "priority": 5}),
    ("instruments", {"id": "hplc-01", "name": "HPLC", "kind": "hplc", "location": "",
                     "status": "running"}),
    ("trigger_rules", RULE),
]


def _run(index: int, status: str) -> dict[str, str]:
    return {"id": f"run-{index}", "experiment_id": "exp-1", "instrument_id": "hplc-01",
            "status": status, "result": RESULT}


class Workload:
    def __init__(self, count: int) -> None:
        from streams.codec import CdcDecoder
        from streams.fixtures import LabChanges, MemoryRegistry
        from streams.records import SourceCoordinates
        from streams.reference import ReferenceStore

        registry = MemoryRegistry()
        changes = LabChanges(registry)
        self.decoder, self.store = CdcDecoder(registry), ReferenceStore()
        for table, row in REFERENCE:
            topic, key, value = changes.encode(table, "c", row)
            change = self.decoder.decode(key, value, SourceCoordinates(topic, 0, 0))
            assert change is not None
            self.store.apply_change(change)
        self.encoded = [changes.encode("runs", "u", _run(i, "completed"), _run(i, "running"))
                        for i in range(count)]
        self.coordinates = [SourceCoordinates(topic, 0, i)
                            for i, (topic, _, _) in enumerate(self.encoded)]
        self.decoded = self.decode()
        self.rules = self.store.rules()
        self.now = datetime.now(UTC)

    def decode(self) -> list[Any]:
        decode = self.decoder.decode
        return [decode(key, value, where)
                for (_, key, value), where in zip(self.encoded, self.coordinates, strict=True)]

    def erd(self) -> int:
        from streams.enrich import enrich
        from streams.route import route
        from streams.trigger import decide

        fired, store, rules, now = 0, self.store, self.rules, self.now
        for change in self.decoded:
            for event in route(enrich(change, store)):
                for decision in decide(event, rules, now=now):
                    fired += decision.outcome == "fired"
        return fired

    def erd_batch(self) -> int:
        from streams.chain import decide_many

        fired = 0
        for start in range(0, len(self.decoded), BATCH):  # a worker's batch, then dropped
            results = decide_many(self.decoded[start:start + BATCH], self.store, self.rules,
                                  now=self.now)
            for result in results:
                for made in result.decisions:
                    for decision in made:
                        fired += decision.outcome == "fired"
        return fired


BATCH = 500


def stages(workload: Workload) -> dict[str, Any]:
    found: dict[str, Any] = {"decode": workload.decode, "erd": workload.erd}
    try:
        import streams.chain  # noqa: F401
    except ImportError:
        return found
    found["erd_batch"] = workload.erd_batch
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", help="cProfile this stage once instead of timing")
    parser.add_argument("--gc", choices=("on", "off", "freeze"), default="on",
                        help="cyclic GC: as is, off, or the workload frozen out of it "
                        "(gc.freeze) with a gen-0 threshold of 20,000")
    args = parser.parse_args()
    workload = Workload(args.events)
    if args.gc == "off":
        gc.disable()
    elif args.gc == "freeze":  # what a worker can do once its reference data is loaded
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
    runnable = stages(workload)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(runnable[args.profile])
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return
    timings: dict[str, list[float]] = {name: [] for name in runnable}
    for _ in range(args.runs):
        for name, stage in runnable.items():  # interleaved: noise hits every stage alike
            # CPU time of this process: on the shared machine wall time mostly measured
            # the other processes; the goal (µs of CPU per event) is CPU time anyway
            started = time.process_time()
            result = stage()
            elapsed = time.process_time() - started
            if name != "decode":
                assert result == args.events, (name, result)
            timings[name].append(elapsed / args.events * 1e6)
    print(json.dumps({name: {"median_us": round(statistics.median(values), 2),
                             "min_us": round(min(values), 2)}
                      for name, values in timings.items()}))


if __name__ == "__main__":
    main()
