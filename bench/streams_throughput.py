"""Events/s through the stream worker's chain (decode -> enrich -> route -> trigger).

    .venv/bin/python bench/streams_throughput.py                # in-process, no broker
    .venv/bin/python bench/streams_throughput.py --kafka 20000  # + one real worker process

In-process: (1) the pure functions enrich+route+decide over decoded changes;
(2) `RecordHandler.handle` per record (Avro decode, spans, routed Avro encode,
decision JSON) into an in-memory sink. Through Kafka: N CDC records are written
first, then one `labstream worker --no-jobs` drains them; rate = N / (broker
time of the first decision -> broker time of the last), decisions topic with
LogAppendTime (method: /work/shared/BENCHMARKING.md). Each event is an HPLC run
reaching `completed` (3 peaks) that fires one rule: one routed record and one
decision per input record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    ProcessProbe,
    create_log_append_topics,
    delete_topics,
    median,
    read_back,
    wait_for_offset,
)

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


def in_process(count: int) -> dict[str, float]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from streams.agents import RawRecord, RecordHandler
    from streams.codec import CdcDecoder, RoutedSerializer
    from streams.config import WorkerSettings
    from streams.enrich import enrich
    from streams.fixtures import LabChanges, MemoryRegistry
    from streams.records import SourceCoordinates
    from streams.reference import ReferenceStore
    from streams.route import route
    from streams.topics import worker_topics
    from streams.trigger import decide

    trace.set_tracer_provider(TracerProvider())  # spans recorded (not exported): real cost
    registry = MemoryRegistry()
    changes, decoder, store = LabChanges(registry), CdcDecoder(registry), ReferenceStore()
    for table, row in REFERENCE:
        topic, key, value = changes.encode(table, "c", row)
        change = decoder.decode(key, value, SourceCoordinates(topic, 0, 0))
        assert change is not None
        store.apply_change(change)
    encoded = [changes.encode("runs", "u", _run(i, "completed"), _run(i, "running"))
               for i in range(count)]
    decoded = [decoder.decode(key, value, SourceCoordinates(topic, 0, i))
               for i, (topic, key, value) in enumerate(encoded)]
    rules = store.rules()

    from datetime import UTC, datetime

    now = datetime.now(UTC)
    started = time.perf_counter()
    fired = 0
    for change in decoded:
        assert change is not None
        for event in route(enrich(change, store)):
            fired += sum(d.outcome == "fired" for d in decide(event, rules, now=now))
    pure_s = time.perf_counter() - started
    assert fired == count

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
    traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    raws = [RawRecord(topic, 0, i, key, value, (("traceparent", traceparent),))
            for i, (topic, key, value) in enumerate(encoded)]

    async def drive() -> None:
        for raw in raws:
            await handler.handle(raw)

    started = time.perf_counter()
    asyncio.run(drive())
    handler_s = time.perf_counter() - started
    assert CountingSink.sent == 2 * count and handler.dead_lettered == 0
    return {"events": count, "pure_events_per_s": round(count / pure_s),
            "handler_events_per_s": round(count / handler_s)}


def through_kafka(count: int, bootstrap: str, workers: int = 1, engine: str = "kafka",
                  rows_per_trace: int = 0) -> dict[str, float]:
    from confluent_kafka import Producer

    from connectors.registry import DbSchemaRegistry
    from streams.config import WorkerSettings
    from streams.fixtures import LabChanges
    from streams.topics import ensure_topics, worker_topics

    name = f"bench-streams-{uuid.uuid4().hex[:6]}"
    settings = WorkerSettings(app_id=f"{name}-worker", cdc_prefix=name,
                              routed_prefix=f"{name}.routed", decisions_topic=f"{name}.decisions")
    create_log_append_topics(bootstrap, [settings.decisions_topic])  # 1 partition
    ensure_topics(settings)
    all_topics = worker_topics(settings).all_names
    changes = LabChanges(DbSchemaRegistry(), topic_prefix=name)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for table, row in REFERENCE:
        _produce(producer, changes.encode(table, "c", row))
    producer.flush()
    env = {**os.environ, "LABSTREAM_WORKER_APP_ID": settings.app_id,
           "LABSTREAM_WORKER_CDC_PREFIX": name,
           "LABSTREAM_WORKER_ROUTED_PREFIX": settings.routed_prefix,
           "LABSTREAM_WORKER_DECISIONS_TOPIC": settings.decisions_topic,
           "LABSTREAM_WORKER_LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"),
           "LABSTREAM_WORKER_ENGINE": engine,
           "LABSTREAM_WORKER_DATA_DIR": f"/tmp/{name}"}
    # several workers: one consumer group sharing the 4-partition CDC topics; with more than
    # one, the events are produced once the group is stable, so the rate has no rebalance in it
    command = [sys.executable, "-m", "labstream.cli", "worker", "--no-jobs"]
    procs: list[subprocess.Popen[bytes]] = []

    def start_workers() -> None:
        procs.extend(subprocess.Popen(
            command, env={**env, "LABSTREAM_WORKER_DATA_DIR": f"/tmp/{name}-{i}"},
            stdout=subprocess.DEVNULL, stderr=open(f"/tmp/{name}-{i}.log", "w"))  # noqa: SIM115
            for i in range(workers))

    # encoded before the workers start: producing must outpace them (same 2 cores)
    encoded = [changes.encode("runs", "u", _run(index, "completed"), _run(index, "running"))
               for index in range(count)]
    if workers > 1:
        start_workers()
        wait_group_stable(bootstrap, settings.app_id, workers)
    for index, record in enumerate(encoded):
        # rows_per_trace: consecutive records share a traceparent (the rows of one source
        # transaction; 1 = every record its own trace, the worst case for tracing); 0 = no
        # trace context (each record a new root trace in the Faust engine, a batch's run
        # one trace in the batch loop)
        if rows_per_trace and index % rows_per_trace == 0:
            traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
        headers = [("traceparent", traceparent)] if rows_per_trace else None
        _produce(producer, record, headers)
        if index % 10_000 == 0:
            producer.flush()
    producer.flush()
    if workers == 1:
        start_workers()
    probes = [ProcessProbe(proc.pid) for proc in procs]
    try:
        alive = lambda: all(proc.poll() is None for proc in procs)  # noqa: E731
        # CPU from the first decision on: what handling costs, without the start-up
        wait_for_offset(bootstrap, settings.decisions_topic, 1, timeout_s=300, alive=alive)
        cpu_start = sum(probe.cpu_seconds() for probe in probes)
        wait_for_offset(bootstrap, settings.decisions_topic, count, timeout_s=1800, alive=alive)
        cpu_s = sum(probe.cpu_seconds() for probe in probes) - cpu_start
        rss_mb = max(probe.peak_rss_mb() for probe in probes)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
    stamps = read_back(bootstrap, settings.decisions_topic, 0, count,
                       lambda value: json.loads(value)["decided_at_ms"])
    arrivals = sorted(broker for broker, _ in stamps)
    seconds = max(arrivals[-1] - arrivals[0], 1) / 1000
    delete_topics(bootstrap, all_topics)
    return {"engine": engine, "rows_per_trace": rows_per_trace, "events": count, "workers": workers,
            "seconds": round(seconds, 2),
            "events_per_s": round((count - 1) / seconds), "worker_cpu_s": round(cpu_s, 2),
            "cpu_us_per_event": round(cpu_s * 1e6 / count, 1),
            "worker_peak_rss_mb": round(rss_mb)}


def wait_group_stable(bootstrap: str, group: str, members: int,
                      timeout_s: float = 120.0) -> None:
    """Until `group` is Stable with `members` members, each with partitions assigned."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result(10)
        if (description.state == ConsumerGroupState.STABLE
                and len(description.members) == members
                and all(m.assignment.topic_partitions for m in description.members)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"group {group} not stable with {members} members in {timeout_s} s")


def _produce(producer: object, encoded: tuple[str, bytes | None, bytes | None],
             headers: list[tuple[str, str]] | None = None) -> None:
    topic, key, value = encoded
    producer.produce(topic, key=key, value=value, headers=headers)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="in-process events per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kafka", type=int, default=0, help="events through a real worker")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers in one group for --kafka (4-partition topics)")
    parser.add_argument("--engines", default="kafka",
                        help="comma-separated worker engines for --kafka, run interleaved "
                             "(kafka: the batch loop; faust)")
    parser.add_argument("--rows-per-trace", type=int, default=0,
                        help="--kafka: consecutive records sharing a traceparent (0: none)")
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()
    from base.settings import service_settings

    if args.kafka:
        bootstrap = service_settings().kafka_bootstrap_servers
        results: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.runs):  # engines interleaved: the machine's noise hits both
            for engine in args.engines.split(","):
                run = through_kafka(args.kafka, bootstrap, args.workers, engine,
                                    args.rows_per_trace)
                print(json.dumps({"kafka": run}), flush=True)
                results.setdefault(engine, []).append(run)
        for engine, engine_runs in results.items():
            print(json.dumps({"kafka_median": {"engine": engine, **{
                key: median(run[key] for run in engine_runs)
                for key in ("events_per_s", "cpu_us_per_event", "worker_peak_rss_mb")}}}))
    if args.skip_in_process:
        return
    runs = [in_process(args.events) for _ in range(args.runs)]
    for run in runs:
        print(json.dumps({"in_process": run}))
    print(json.dumps({"in_process_median": {
        key: median(run[key] for run in runs)
        for key in ("pure_events_per_s", "handler_events_per_s")}}))


if __name__ == "__main__":
    main()
