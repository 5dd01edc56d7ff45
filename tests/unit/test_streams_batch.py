"""The batch path of the worker: compiled routed Avro, runs of one trace, collected jobs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from streams_builders import COMMIT_MS, EXPERIMENT, change, full_reference, run_row

from connectors.serde import AvroDeserializer
from streams import route as routing
from streams.agents import RawRecord, RecordHandler, trace_runs
from streams.codec import CdcDecoder, RoutedSerializer
from streams.config import WorkerSettings
from streams.enrich import enrich
from streams.fixtures import LabChanges, MemoryRegistry
from streams.reference import ReferenceStore
from streams.route import route
from streams.topics import worker_topics

PEAKS = json.dumps({"peaks": [{"rt_min": 1.2, "area": 100.5, "height": 7}]})
TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACE_B = "1af7651916cd43dd8448eb211c80319d"


def _tp(trace_id: str) -> tuple[tuple[str, bytes], ...]:
    return (("traceparent", f"00-{trace_id}-b7ad6b7169203331-01".encode()),)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _serializer() -> RoutedSerializer:
    registry = MemoryRegistry()
    serializer = RoutedSerializer(registry, worker_topics(WorkerSettings()).routed_topics)
    serializer.register_all()
    return serializer


@pytest.mark.parametrize("writer", ["c", "python"])
def test_compiled_routed_records_are_fastavros_bytes_for_every_kind(writer: str) -> None:
    item = {"id": "inv-1", "name": "acetonitrile", "lot": "L1", "quantity": "50",
            "reorder_level": "10.000", "unit": "ml", "location": "shelf",
            "expires_at": _iso(COMMIT_MS + 86_400_000)}
    reading = {"id": 42, "sensor_id": "fridge-01-sensor", "instrument_id": "fridge-01",
               "kind": "temperature", "celsius": "9.5", "door_open": None,
               "read_at": "2025-11-24T16:00:00Z"}
    records = [
        change("runs", "u", run_row("completed", result=PEAKS), run_row("running")),
        change("runs", "u", run_row("failed"), run_row("running")),
        change("experiments", "c", dict(EXPERIMENT, status="submitted", priority=5)),
        change("inventory_items", "u", dict(item, quantity="9.5"), item),
        change("inventory_items", "c", item),
        change("sensor_readings", "c", reading),
    ]
    serializer = _serializer()
    for compiled in serializer._compiled.values():
        assert compiled.fast is not None  # built by `make install`; test_codec_speedups too
        if writer == "python":
            compiled.fast = None
    kinds = set()
    for record in records:
        for event in route(enrich(record, full_reference())):
            for _ in range(2):  # the second time from the enrichment cache
                assert serializer.value(event) == serializer.value_fastavro(event)
            kinds.add(event.kind)
    assert kinds == set(routing.ROUTED_KINDS)


def test_a_replaced_reference_row_is_written_anew_not_from_the_cache() -> None:
    serializer = _serializer()
    registry_reader = AvroDeserializer(serializer._registry)
    reference = full_reference()
    record = change("runs", "u", run_row("completed", result=PEAKS), run_row("running"))
    [before] = route(enrich(record, reference))
    reference.rows["tenants"]["acme"] = {"id": "acme", "name": "Renamed", "tier": "gold"}
    [after] = route(enrich(record, reference))
    assert registry_reader.decode(serializer.value(before))["enrichment"]["tenant"]["name"] \
        == "Acme Labs"
    assert registry_reader.decode(serializer.value(after))["enrichment"]["tenant"] == \
        {"id": "acme", "name": "Renamed", "tier": "gold"}


def test_trace_runs_split_on_trace_context_and_topic_keeping_order() -> None:
    raws = [RawRecord("t", 0, 1, None, b"", _tp(TRACE_A)),
            RawRecord("t", 0, 2, None, b"", _tp(TRACE_A)),
            RawRecord("t", 0, 3, None, b"", _tp(TRACE_B)),
            RawRecord("u", 0, 4, None, b"", _tp(TRACE_B)),
            RawRecord("u", 1, 5, None, b"", (*_tp(TRACE_B), ("other", b"x"))),
            RawRecord("u", 1, 6, None, b"", ())]
    runs = trace_runs(raws)
    assert [[raw.offset for raw in run] for run in runs] == [[1, 2], [3], [4, 5], [6]]


class ListSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, dict]] = []

    async def send(self, topic, key, value, headers) -> None:
        self.records.append((topic, key, value, dict(headers)))


@pytest.fixture
def spans():
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))  # type: ignore[attr-defined]
    yield memory
    memory.shutdown()


def _handler(sink: ListSink) -> tuple[RecordHandler, LabChanges]:
    registry = MemoryRegistry()
    settings = WorkerSettings(enrichment_wait_s=0.05, enrichment_poll_s=0.01)
    topics = worker_topics(settings)
    serializer = RoutedSerializer(registry, topics.routed_topics)
    serializer.register_all()
    store = ReferenceStore()
    store.put("tenants", {"id": "acme", "name": "Acme", "tier": "standard"})
    store.put("experiments", {"id": "exp-1", "tenant_id": "acme", "kind": "hplc",
                              "status": "running"})
    store.put("instruments", {"id": "hplc-01", "name": "HPLC", "kind": "hplc"})
    store.put("trigger_rules", {"id": "report", "tenant_id": None, "enabled": True,
                                "event_kind": "hplc.completed", "condition": "{}",
                                "backend": "local", "image": None,
                                "command": '["report", "{payload.run_id}"]', "env": "{}",
                                "timeout_s": 30, "max_concurrency": 1})

    class Runner:
        async def submit_many(self, requests):  # pragma: no cover - batch mode never calls
            raise AssertionError("batch mode collects jobs; the batch worker queues them")

    handler = RecordHandler(settings=settings, topics=topics, store=store,
                            decoder=CdcDecoder(registry), routed_serializer=serializer,
                            sink=sink, runner=Runner())
    return handler, LabChanges(registry)


def _run_record(changes: LabChanges, index: int, headers, offset: int) -> RawRecord:
    run = {"id": f"run-{index}", "experiment_id": "exp-1", "instrument_id": "hplc-01",
           "result": PEAKS}
    topic, key, value = changes.encode("runs", "u", dict(run, status="completed"),
                                       dict(run, status="running"))
    return RawRecord(topic, 0, offset, key, value, headers)


def test_a_batch_gets_one_consumer_and_one_producer_span_per_trace_run(spans) -> None:
    sink = ListSink()
    handler, changes = _handler(sink)
    raws = [_run_record(changes, 1, _tp(TRACE_A), 10), _run_record(changes, 2, _tp(TRACE_A), 11),
            RawRecord(raws_topic := "lab.public.runs", 0, 12, b"junk", b"not avro", _tp(TRACE_A)),
            _run_record(changes, 3, _tp(TRACE_B), 13)]
    asyncio.run(handler.handle_batch(raws))

    finished = spans.get_finished_spans()
    consumers = [s for s in finished if s.kind == SpanKind.CONSUMER]
    producers = [s for s in finished if s.kind == SpanKind.PRODUCER]
    assert [format(s.context.trace_id, "032x") for s in consumers] == [TRACE_A, TRACE_B]
    assert consumers[0].attributes["messaging.batch.message_count"] == 3
    assert consumers[0].attributes["lab.kafka.offset.last"] == 12
    assert consumers[0].name == f"process {raws_topic}"
    # the poison record: dead-lettered, recorded on its run's span, the others went on
    assert any(event.name == "exception" for event in consumers[0].events)
    assert [p.parent.span_id for p in producers] == [c.context.span_id for c in consumers]
    assert producers[0].attributes["messaging.batch.message_count"] == 5  # 2 x 2 + 1 letter

    by_trace = {format(p.context.trace_id, "032x"): p for p in producers}
    for topic, _, _, headers in sink.records:  # every output: child of its run's send span
        if topic == handler.topics.dlq:
            continue  # a dead letter keeps the record's own headers (it is the record)
        trace_id, span_id = headers["traceparent"].decode().split("-")[1:3]
        assert span_id == format(by_trace[trace_id].context.span_id, "016x")
    decisions = [json.loads(value) for topic, _, value, _ in sink.records
                 if topic == "lab.decisions"]
    assert [d["outcome"] for d in decisions] == ["fired"] * 3

    requests = handler.take_requests()
    assert [r.command for r in requests] == [("report", f"run-{i}") for i in (1, 2, 3)]
    assert [r.trace_id for r in requests] == [TRACE_A, TRACE_A, TRACE_B]
    assert handler.take_requests() == []  # taken once
    assert handler.processed == 4 and handler.dead_lettered == 1


def test_runs_beyond_the_span_budget_share_one_batch_span_linked_to_each(spans) -> None:
    sink = ListSink()
    handler, changes = _handler(sink)
    handler.settings = handler.settings.model_copy(update={"trace_runs_per_batch": 1})
    trace_c = "2af7651916cd43dd8448eb211c80319e"
    raws = [_run_record(changes, 1, _tp(TRACE_A), 20), _run_record(changes, 2, _tp(TRACE_B), 21),
            _run_record(changes, 3, _tp(TRACE_B), 22), _run_record(changes, 4, _tp(trace_c), 23)]
    asyncio.run(handler.handle_batch(raws))

    consumers = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    own = [s for s in consumers if "lab.linked_runs" not in s.attributes]
    [batch] = [s for s in consumers if "lab.linked_runs" in s.attributes]
    assert [format(s.context.trace_id, "032x") for s in own] == [TRACE_A]  # within budget
    assert format(batch.context.trace_id, "032x") not in {TRACE_A, TRACE_B, trace_c}
    assert batch.parent is None  # a trace of its own, linked to each run's context
    assert [format(link.context.trace_id, "032x") for link in batch.links] == [TRACE_B, trace_c]
    assert [format(link.context.span_id, "016x") for link in batch.links] == \
        ["b7ad6b7169203331"] * 2
    assert batch.attributes["messaging.batch.message_count"] == 3
    assert batch.attributes["lab.linked_runs"] == 2
    # the linked runs' outputs and jobs carry their own incoming context: one trace each
    # from the front end to the job, the batch span shown beside it as a linking span
    routed = [dict(headers)["traceparent"].decode() for topic, _, _, headers in sink.records
              if topic == "lab.routed.hplc.completed"]
    assert routed[1:] == [_tp(TRACE_B)[0][1].decode()] * 2 + [_tp(trace_c)[0][1].decode()]
    requests = handler.take_requests()
    assert [r.trace_id for r in requests] == [TRACE_A, TRACE_B, TRACE_B, trace_c]
    assert [r.traceparent for r in requests[1:]] == \
        [_tp(t)[0][1].decode() for t in (TRACE_B, TRACE_B, trace_c)]


@pytest.mark.parametrize("writer", ["c", "python"])
def test_a_payload_value_that_is_not_avro_ready_falls_back_to_the_plain_copy(writer) -> None:
    from dataclasses import replace
    from decimal import Decimal

    serializer = _serializer()
    if writer == "python":
        for compiled in serializer._compiled.values():
            compiled.fast = None
    record = change("runs", "u", run_row("completed", result=PEAKS), run_row("running"))
    [event] = route(enrich(record, full_reference()))
    peaks = [dict(peak, area=Decimal("100.5")) for peak in event.payload["peaks"]]
    odd = replace(event, payload={**event.payload, "peaks": peaks})
    assert serializer.value(odd) == serializer.value_fastavro(odd) == serializer.value(event)
