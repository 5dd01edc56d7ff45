"""What tracing costs the stream worker: `RecordHandler.handle` with tracing on vs off.

    .venv/bin/python bench/tracing_worker.py [--records 5000] [--runs 3]
    .venv/bin/python bench/tracing_worker.py --kafka 3000 --runs 3   # the real worker process

Every input record carries a sampled `traceparent` (every transaction traced, as the
connector writes them); each gives one CONSUMER span, one PRODUCER span (its routed
record + its decision) and the two outputs into an in-memory sink (no broker: the
broker's cost is the same with tracing on or off, and leaving it out makes tracing's
share look bigger, not smaller). Modes, each in its own process (one TracerProvider per
process), alternating run by run: `on` = exporters `db` (the span store, real
PostgreSQL; the final flush is inside the timed part, and the exporter thread's CPU
counts), `on-noexport` = spans made, none exported, `off` = `LABSTREAM_TRACING_ENABLED=
false`. Prints one JSON line per run, then medians and the cost against `off`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = {
    "on": {"LABSTREAM_TRACING_ENABLED": "true", "LABSTREAM_TRACING_EXPORTERS": "db"},
    "on-noexport": {"LABSTREAM_TRACING_ENABLED": "true", "LABSTREAM_TRACING_EXPORTERS": "none"},
    "off": {"LABSTREAM_TRACING_ENABLED": "false", "LABSTREAM_TRACING_EXPORTERS": "none"},
}


def one_run(records: int) -> dict[str, object]:
    """In this process, with the mode's environment already set."""
    from bench.streams_throughput import REFERENCE, _run
    from streams.agents import RawRecord, RecordHandler
    from streams.codec import CdcDecoder, RoutedSerializer
    from streams.config import WorkerSettings
    from streams.fixtures import LabChanges, MemoryRegistry
    from streams.records import SourceCoordinates
    from streams.reference import ReferenceStore
    from streams.topics import worker_topics
    from tracing.setup import configure_tracing, flush_tracing

    configure_tracing("labstream-worker")
    registry = MemoryRegistry()
    changes, decoder, store = LabChanges(registry), CdcDecoder(registry), ReferenceStore()
    for table, row in REFERENCE:
        topic, key, value = changes.encode(table, "c", row)
        change = decoder.decode(key, value, SourceCoordinates(topic, 0, 0))
        assert change is not None
        store.apply_change(change)
    encoded = [changes.encode("runs", "u", _run(i, "completed"), _run(i, "running"))
               for i in range(records + 500)]

    class CountingSink:
        sent = 0

        async def send(self, topic, key, value, headers) -> None:
            CountingSink.sent += 1

    settings = WorkerSettings()
    topics = worker_topics(settings)
    serializer = RoutedSerializer(registry, topics.routed_topics)
    serializer.register_all()
    handler = RecordHandler(settings=settings, topics=topics, store=store, decoder=decoder,
                            routed_serializer=serializer, sink=CountingSink(), runner=None)
    raws = [RawRecord(topic, 0, i, key, value, (("traceparent", (
        f"00-{os.urandom(16).hex()}-b7ad6b7169203331-01").encode()),))
        for i, (topic, key, value) in enumerate(encoded)]

    async def drive(batch: list[RawRecord]) -> None:
        for raw in batch:
            await handler.handle(raw)

    asyncio.run(drive(raws[:500]))  # warm-up: caches, schemas, the span store connection
    flush_tracing()
    cpu_before, started = time.process_time(), time.perf_counter()
    asyncio.run(drive(raws[500:]))
    assert flush_tracing(60_000)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    assert CountingSink.sent == 2 * (records + 500) and handler.dead_lettered == 0
    from prometheus_client import REGISTRY

    dropped = sum(sample.value for metric in REGISTRY.collect()
                  if metric.name == "labstream_spans_dropped" for sample in metric.samples
                  if sample.name.endswith("_total"))
    exported = REGISTRY.get_sample_value("labstream_spans_exported_total", {"exporter": "db"})
    if os.environ["LABSTREAM_TRACING_EXPORTERS"] == "db":
        delete_own_spans()
    return {"records_per_s": round(records / seconds), "cpu_s": round(cpu, 2),
            "us_cpu_per_record": round(1e6 * cpu / records, 1),
            "spans_exported": int(exported or 0), "spans_dropped": int(dropped)}


def delete_own_spans() -> None:
    import psycopg

    from base.settings import service_settings

    with psycopg.connect(service_settings().database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.spans WHERE service_name = 'labstream-worker' "
                     "AND resource->>'process.pid' = %s", (str(os.getpid()),))


def through_kafka(records: int, runs: int) -> None:
    """The real worker process (Faust, aiokafka, the broker) drains `records` CDC records
    that carry no trace context (each becomes a root CONSUMER span + a PRODUCER span:
    every record traced); `on` exports to the span store, `off` disables tracing."""
    from base.settings import service_settings
    from bench.streams_throughput import through_kafka as drain

    bootstrap = service_settings().kafka_bootstrap_servers
    results: dict[str, list[dict[str, object]]] = {"on": [], "off": []}
    for _ in range(runs):
        for mode in results:
            saved = {name: os.environ.get(name) for name in MODES[mode]}
            os.environ.update(MODES[mode])
            try:
                result = {"tracing": mode, **drain(records, bootstrap)}
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
            results[mode].append(result)
            print(json.dumps(result), flush=True)
    medians = {mode: {key: statistics.median(float(str(r[key])) for r in rs)
                      for key in ("events_per_s", "worker_cpu_s")} for mode, rs in results.items()}
    on, off = medians["on"], medians["off"]
    print(json.dumps({"median": medians, "cost_vs_off": {
        "rate_cost_pct": round(100 * (1 - on["events_per_s"] / off["events_per_s"]), 1),
        "cpu_cost_pct": round(100 * (on["worker_cpu_s"] / off["worker_cpu_s"] - 1), 1)}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kafka", type=int, default=0,
                        help="instead: N records through a real `labstream worker --no-jobs` "
                             "(bench/streams_throughput.py's method), tracing on vs off")
    parser.add_argument("--child", choices=sorted(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.records)))
        return
    if args.kafka:
        through_kafka(args.kafka, args.runs)
        return
    results: dict[str, list[dict[str, object]]] = {mode: [] for mode in MODES}
    for _ in range(args.runs):
        for mode, env in MODES.items():
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--records", str(args.records)],
                env={**os.environ, **env}, check=True, capture_output=True, text=True)
            result = {"tracing": mode, **json.loads(out.stdout.strip().splitlines()[-1])}
            results[mode].append(result)
            print(json.dumps(result), flush=True)
    medians = {mode: {key: statistics.median(float(str(r[key])) for r in runs)
                      for key in ("records_per_s", "cpu_s")} for mode, runs in results.items()}
    off = medians["off"]
    costs = {mode: {"rate_cost_pct": round(100 * (1 - m["records_per_s"] / off["records_per_s"]),
                                           1),
                    "cpu_cost_pct": round(100 * (m["cpu_s"] / off["cpu_s"] - 1), 1)}
             for mode, m in medians.items() if mode != "off"}
    print(json.dumps({"median": medians, "cost_vs_off": costs}))


if __name__ == "__main__":
    main()
