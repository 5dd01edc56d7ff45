"""What tracing costs the stream worker: `RecordHandler.handle` with tracing on vs off.

    .venv/bin/python bench/tracing_worker.py [--records 500] [--rounds 10]
    .venv/bin/python bench/tracing_worker.py --kafka 3000 --runs 3   # the real worker process

In process (default): every input record carries its own sampled `traceparent` (every
record its own traced transaction: the worst case); each gives one CONSUMER span, one
PRODUCER span (its routed record + its decision) and the two outputs into an in-memory
sink (no broker: the broker's cost is the same with tracing on or off, and leaving it
out makes tracing's share look bigger, not smaller). See `interleaved` for the modes.
With --kafka: a real worker process drains N records, tracing on vs off alternating.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = {
    "on": {"LABSTREAM_TRACING_ENABLED": "true", "LABSTREAM_TRACING_EXPORTERS": "db"},
    "on-noexport": {"LABSTREAM_TRACING_ENABLED": "true", "LABSTREAM_TRACING_EXPORTERS": "none"},
    "off": {"LABSTREAM_TRACING_ENABLED": "false", "LABSTREAM_TRACING_EXPORTERS": "none"},
}


def build(records: int, rows_per_trace: int = 1) -> tuple[Any, list[Any]]:
    """A RecordHandler on an in-memory sink and `records` traced raw records, each run of
    `rows_per_trace` consecutive records sharing one traceparent (one source transaction)."""
    from bench.streams_throughput import REFERENCE, _run
    from streams.agents import RawRecord, RecordHandler
    from streams.codec import CdcDecoder, RoutedSerializer
    from streams.config import WorkerSettings
    from streams.fixtures import LabChanges, MemoryRegistry
    from streams.records import SourceCoordinates
    from streams.reference import ReferenceStore
    from streams.topics import worker_topics

    registry = MemoryRegistry()
    changes, decoder, store = LabChanges(registry), CdcDecoder(registry), ReferenceStore()
    for table, row in REFERENCE:
        topic, key, value = changes.encode(table, "c", row)
        change = decoder.decode(key, value, SourceCoordinates(topic, 0, 0))
        assert change is not None
        store.apply_change(change)

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
    parents = [f"00-{os.urandom(16).hex()}-b7ad6b7169203331-01".encode()
               for _ in range(records // rows_per_trace + 1)]
    raws = [RawRecord(topic, 0, i, key, value, (("traceparent", parents[i // rows_per_trace]),))
            for i, (topic, key, value) in enumerate(
                changes.encode("runs", "u", _run(i, "completed"), _run(i, "running"))
                for i in range(records))]
    return handler, raws


def interleaved(records: int, rounds: int, rows_per_trace: int = 1,
                engine: str = "kafka") -> None:
    """One process, one handler; its tracer switched between the modes batch by batch
    (`on`: SDK tracer + BatchSpanProcessor -> span store, flushed inside the timed part;
    `on-noexport`: SDK tracer, no processor; `off`: the no-op tracer), so the machine's
    drift hits every mode alike. CPU = process time (all threads: the exporter's too)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from tracing.settings import TracingSettings
    from tracing.setup import build_resource, build_tracer_provider

    exporting = build_tracer_provider("labstream-worker", TracingSettings(exporters="db"))
    tracers = {"on": exporting.get_tracer("streams.agents"),
               "on-noexport": TracerProvider(resource=build_resource("labstream-worker"))
               .get_tracer("streams.agents"),
               "off": trace.NoOpTracer()}
    handler, raws = build(records * (rounds * len(tracers) + 1), rows_per_trace)

    async def drive(batch: list[Any]) -> None:
        if engine == "kafka":  # the batch loop: the whole batch at once, a span per run
            await handler.handle_batch(batch)
            return
        for raw in batch:  # the Faust agent: record by record, two spans each
            await handler.handle(raw)

    handler.tracer = tracers["on"]
    asyncio.run(drive(raws[:records]))  # warm-up: caches, schemas, the span store connection
    exporting.force_flush()
    cpu = {mode: 0.0 for mode in tracers}
    wall = {mode: 0.0 for mode in tracers}
    position = records
    for _ in range(rounds):
        for mode, tracer in tracers.items():
            handler.tracer = tracer
            batch = raws[position:position + records]
            position += records
            cpu_before, started = time.process_time(), time.perf_counter()
            asyncio.run(drive(batch))
            if mode == "on":
                assert exporting.force_flush(60_000)
            cpu[mode] += time.process_time() - cpu_before
            wall[mode] += time.perf_counter() - started
    from prometheus_client import REGISTRY

    dropped = sum(sample.value for metric in REGISTRY.collect()
                  if metric.name == "labstream_spans_dropped" for sample in metric.samples
                  if sample.name.endswith("_total"))
    total = records * rounds
    result = {mode: {"us_cpu_per_record": round(1e6 * cpu[mode] / total, 1),
                     "records_per_s": round(total / wall[mode])} for mode in tracers}
    off = cpu["off"]
    print(json.dumps({"engine": engine, "rows_per_trace": rows_per_trace,
                      "records_per_mode": total, "rounds": rounds, **result,
                      "cpu_cost_vs_off_pct": {mode: round(100 * (cpu[mode] / off - 1), 1)
                                              for mode in ("on", "on-noexport")},
                      "spans_dropped": int(dropped)}), flush=True)
    exporting.shutdown()
    delete_own_spans()


def delete_own_spans() -> None:
    import psycopg

    from base.settings import service_settings

    with psycopg.connect(service_settings().database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.spans WHERE service_name = 'labstream-worker' "
                     "AND resource->>'process.pid' = %s", (str(os.getpid()),))


def through_kafka(records: int, runs: int, rows_per_trace: int = 1,
                  engine: str = "kafka") -> None:
    """The real worker process drains `records` CDC records, each run of `rows_per_trace`
    sharing one traceparent (every transaction traced); `on` exports to the span store,
    `off` disables tracing."""
    from base.settings import service_settings
    from bench.streams_throughput import through_kafka as drain

    bootstrap = service_settings().kafka_bootstrap_servers
    results: dict[str, list[dict[str, object]]] = {"on": [], "off": []}
    for _ in range(runs):
        for mode in results:
            saved = {name: os.environ.get(name) for name in MODES[mode]}
            os.environ.update(MODES[mode])
            try:
                result = {"tracing": mode, **drain(records, bootstrap, engine=engine,
                                                   rows_per_trace=rows_per_trace)}
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
    parser.add_argument("--records", type=int, default=500, help="records per batch")
    parser.add_argument("--rounds", type=int, default=10, help="batches per mode")
    parser.add_argument("--kafka", type=int, default=0,
                        help="instead: N records through a real `labstream worker --no-jobs` "
                             "(bench/streams_throughput.py's method), tracing on vs off")
    parser.add_argument("--runs", type=int, default=3, help="--kafka runs per mode")
    parser.add_argument("--rows-per-trace", type=int, default=1,
                        help="consecutive records sharing a traceparent (rows of one source "
                             "transaction); 1 = every record its own trace, the worst case")
    parser.add_argument("--engine", default="kafka", choices=("kafka", "faust"))
    args = parser.parse_args()
    if args.kafka:
        through_kafka(args.kafka, args.runs, args.rows_per_trace, args.engine)
        return
    interleaved(args.records, args.rounds, args.rows_per_trace, args.engine)


if __name__ == "__main__":
    main()
