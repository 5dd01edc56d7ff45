"""The record handler end to end without a broker: fake sink, in-memory registry."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from connectors.serde import AvroDeserializer
from streams.agents import RawRecord, RecordHandler
from streams.codec import CdcDecoder, RoutedSerializer
from streams.config import WorkerSettings
from streams.deadletter import ERROR_HEADER, OFFSET_HEADER, read_dead_letter
from streams.fixtures import LabChanges, MemoryRegistry
from streams.jobqueue import JobQueuer
from streams.jobs.model import job_id_for
from streams.reference import ReferenceStore
from streams.topics import worker_topics

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
INCOMING = (("traceparent", f"00-{TRACE_ID}-b7ad6b7169203331-01".encode()),)


@pytest.fixture(scope="module", autouse=True)
def _sdk_tracer() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())


class ListSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, tuple]] = []

    async def send(self, topic, key, value, headers) -> None:
        self.records.append((topic, key, value, tuple(headers)))

    def on(self, topic: str) -> list:
        return [record for record in self.records if record[0] == topic]


@dataclass
class Submitted:
    job_id: str
    created: bool
    status: str


class FakeRunner:
    def __init__(self, sink: ListSink) -> None:
        self.requests: list = []
        self.sink = sink
        self.decisions_seen: list[int] = []  # decisions already sent when a job was queued

    async def submit(self, request):
        self.decisions_seen.append(len(self.sink.on("lab.decisions")))
        self.requests.append(request)
        return Submitted(f"job-{len(self.requests)}", True, "queued")


@pytest.fixture
def world():
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
    sink = ListSink()
    runner = FakeRunner(sink)
    handler = RecordHandler(settings=settings, topics=topics, store=store,
                            decoder=CdcDecoder(registry), routed_serializer=serializer,
                            sink=sink, runner=runner,
                            clock=lambda: datetime(2025, 11, 24, tzinfo=UTC))
    return handler, LabChanges(registry), sink, runner, registry, topics


RUN = {"id": "run-1", "experiment_id": "exp-1", "instrument_id": "hplc-01",
       "result": '{"peaks": [{"rt_min": 1.5, "area": 10, "height": 2}]}'}


def _raw(encoded, offset: int, headers=INCOMING) -> RawRecord:
    topic, key, value = encoded
    return RawRecord(topic, 0, offset, key, value, headers)


def test_completed_hplc_run_is_routed_decided_and_submitted_in_one_trace(world) -> None:
    handler, changes, sink, runner, registry, topics = world
    record = changes.encode("runs", "u", dict(RUN, status="completed"),
                            dict(RUN, status="running"), lsn=777)
    asyncio.run(handler.handle(_raw(record, 5)))

    [(_, key, value, headers)] = sink.on("lab.routed.hplc.completed")
    routed = AvroDeserializer(registry).decode(value)
    assert key == b'{"id":"run-1"}'
    assert routed["payload"]["peaks"] == [{"rt_min": 1.5, "area": 10.0, "height": 2.0}]
    assert routed["origin"] == {"topic": "lab.public.runs", "partition": 0, "offset": 5,
                                "lsn": 777, "table": "runs", "primary_key": '{"id":"run-1"}',
                                "op": "u"}
    assert routed["enrichment"]["complete"] is True
    assert dict(headers)["traceparent"].decode().split("-")[1] == TRACE_ID

    [(_, decision_key, decision_value, decision_headers)] = sink.on(topics.decisions)
    decision = json.loads(decision_value)
    assert decision["outcome"] == "fired"
    assert decision["job_id"] == job_id_for(decision["job_key"])  # named before it is queued
    assert decision_key.decode() == decision["job_key"]
    assert dict(decision_headers)["traceparent"].decode().split("-")[1] == TRACE_ID

    [request] = runner.requests
    assert request.command == ("report", "run-1")
    assert request.trace_id == TRACE_ID  # the job's TRACEPARENT is in the same trace
    assert request.traceparent != INCOMING[0][1].decode()  # parent: the process span
    assert runner.decisions_seen == [1]  # the decision was sent before the job was queued


def test_poison_record_goes_to_dlq_and_next_record_is_processed(world) -> None:
    handler, changes, sink, _, _, topics = world
    poison = RawRecord("lab.public.runs", 1, 9, b"k", b"\x00\x00\x00\x00\x63garbage", INCOMING)
    good = changes.encode("runs", "u", dict(RUN, status="failed"), dict(RUN, status="running"))

    async def both() -> None:
        await handler.handle(poison)
        await handler.handle(_raw(good, 10))

    asyncio.run(both())
    [(_, key, value, headers)] = sink.on(topics.dlq)
    assert (key, value) == (b"k", b"\x00\x00\x00\x00\x63garbage")
    error, coordinates = read_dead_letter(headers)
    assert "cannot be decoded" in error and coordinates.offset == 9 and coordinates.partition == 1
    assert ("traceparent", INCOMING[0][1]) in headers
    assert dict(headers)[OFFSET_HEADER] == b"9" and ERROR_HEADER in dict(headers)
    assert len(sink.on("lab.routed.run.failed")) == 1
    assert handler.dead_lettered == 1 and handler.processed == 2


def test_no_rule_decision_is_published_for_routed_kind_without_rules(world) -> None:
    handler, changes, sink, runner, _, topics = world
    record = changes.encode("runs", "u", dict(RUN, status="failed"), dict(RUN, status="running"))
    asyncio.run(handler.handle(_raw(record, 1)))
    [(_, _, value, _)] = sink.on(topics.decisions)
    assert json.loads(value)["reason"] == "no_rule_for_kind"
    assert runner.requests == []


def test_unroutable_completed_run_gives_enrichment_incomplete_decision(world) -> None:
    handler, changes, sink, _, _, topics = world
    orphan = dict(RUN, experiment_id="exp-unknown", instrument_id="unknown-instrument")
    record = changes.encode("runs", "u", dict(orphan, status="completed"),
                            dict(orphan, status="running"))
    asyncio.run(handler.handle(_raw(record, 2)))
    [(_, _, value, _)] = sink.on(topics.decisions)
    decision = json.loads(value)
    assert (decision["outcome"], decision["reason"]) == ("skipped", "enrichment_incomplete")
    assert "exp-unknown" in decision["detail"]


def test_tombstones_are_ignored(world) -> None:
    handler, _, sink, _, _, _ = world
    asyncio.run(handler.handle(RawRecord("lab.public.runs", 0, 3, b"k", None)))
    assert sink.records == []


def test_a_failed_submit_is_retried_until_the_job_is_queued(world, monkeypatch) -> None:
    handler, changes, sink, runner, _, topics = world
    monkeypatch.setattr("streams.agents.SUBMIT_RETRY_S", 0.01)
    submit, failures = runner.submit, []

    async def flaky(request):
        if len(failures) < 2:
            failures.append(request)
            raise RuntimeError("database down")
        return await submit(request)

    runner.submit = flaky
    record = changes.encode("runs", "u", dict(RUN, status="completed"),
                            dict(RUN, status="running"))
    asyncio.run(handler.handle(_raw(record, 4)))
    [(_, _, value, _)] = sink.on(topics.decisions)
    assert json.loads(value)["outcome"] == "fired"
    assert len(failures) == 2 and len(runner.requests) == 1  # queued once, not dropped


def test_an_invalid_rule_gives_a_failed_decision_and_no_job(world) -> None:
    handler, changes, sink, runner, _, topics = world
    handler.store.put("trigger_rules", {"id": "report", "tenant_id": None, "enabled": True,
                                        "event_kind": "hplc.completed", "condition": "{}",
                                        "backend": "docker", "image": None,
                                        "command": '["report"]', "env": "{}",
                                        "timeout_s": 30, "max_concurrency": 1})
    record = changes.encode("runs", "u", dict(RUN, status="completed"),
                            dict(RUN, status="running"))
    asyncio.run(handler.handle(_raw(record, 4)))
    [(_, _, value, _)] = sink.on(topics.decisions)
    decision = json.loads(value)
    assert (decision["outcome"], decision["reason"]) == ("failed", "submit_failed")
    assert "needs an image" in decision["detail"]
    assert runner.requests == []


def test_an_output_too_large_for_kafka_goes_to_the_dlq_as_a_reference(world) -> None:
    handler, changes, sink, runner, _, topics = world
    handler.settings = handler.settings.model_copy(update={"max_output_bytes": 2048})
    big = dict(RUN, status="completed", result=json.dumps(
        {"peaks": [{"rt_min": i, "area": 10, "height": 2} for i in range(400)]}))
    record = changes.encode("runs", "u", big, dict(RUN, status="running"))
    following = changes.encode("runs", "u", dict(RUN, id="run-2", status="failed"),
                               dict(RUN, id="run-2", status="running"))
    asyncio.run(handler.handle(_raw(record, 21)))
    asyncio.run(handler.handle(_raw(following, 22)))  # the agent goes on
    assert sink.on("lab.routed.hplc.completed") == []
    [(_, _, value, headers)] = sink.on(topics.dlq)
    assert value is None
    error, coordinates = read_dead_letter(headers)
    assert "lab.routed.hplc.completed" in error and "over the limit of 2048" in error
    assert (coordinates.topic, coordinates.offset) == ("lab.public.runs", 21)
    assert dict(headers)["labstream-dlq-reference"].startswith(b"lab.routed.hplc.completed ")
    # its decision (small) still went out, and its job was queued after it
    outcomes = [json.loads(v)["outcome"] for _, _, v, _ in sink.on(topics.decisions)]
    assert outcomes[:1] == ["fired"]
    assert len(runner.requests) == 1
    assert handler.processed == 2


def test_processing_failure_after_decode_is_dead_lettered_too(world) -> None:
    handler, changes, sink, _, _, topics = world

    def broken_value(event):
        raise ValueError("schema mismatch")

    handler.routed_serializer.value = broken_value
    record = changes.encode("runs", "u", dict(RUN, status="failed"), dict(RUN, status="running"))
    asyncio.run(handler.handle(_raw(record, 11)))
    [(_, key, value, headers)] = sink.on(topics.dlq)
    assert (key, value) == (record[1], record[2])
    error, coordinates = read_dead_letter(headers)
    assert error == "ValueError: schema mismatch" and coordinates.offset == 11


def test_sweep_announces_a_lot_that_entered_the_window_without_a_row_change(world) -> None:
    handler, changes, sink, _, registry, topics = world
    from streams.records import SourceCoordinates

    commit = datetime(2025, 11, 1, tzinfo=UTC)
    item = {"id": "inv-9", "name": "buffer", "lot": "L9", "quantity": "50", "unit": "ml",
            "reorder_level": "5", "location": "", "expires_at": "2025-11-11 00:00:00+00"}
    topic, key, value = changes.encode("inventory_items", "c", item,
                                       commit_ms=int(commit.timestamp() * 1000))
    change = handler.decoder.decode(key, value, SourceCoordinates(topic, 2, 40))
    handler.store.apply_change(change)

    handler._clock = lambda: datetime(2025, 11, 2, tzinfo=UTC)  # 9 days left: not yet
    assert asyncio.run(handler.sweep_expiring_lots()) == 0
    handler._clock = lambda: datetime(2025, 11, 6, tzinfo=UTC)  # 5 days left
    assert asyncio.run(handler.sweep_expiring_lots()) == 1
    assert asyncio.run(handler.sweep_expiring_lots()) == 0  # once per lot
    [(_, _, value, headers)] = sink.on("lab.routed.inventory.lot_expiring")
    routed = AvroDeserializer(registry).decode(value)
    assert routed["payload"]["days_left"] == 5.0
    assert routed["origin"] == {"topic": topic, "partition": 2, "offset": 40,
                                "lsn": change.envelope.lsn, "table": "inventory_items",
                                "primary_key": '{"id":"inv-9"}', "op": "c"}
    assert routed["event_id"] == "inventory_items:inv-9:lot:L9@2025-11-11T00:00:00.000000Z"
    assert "traceparent" in dict(headers)
    [(_, _, decision, _)] = sink.on(topics.decisions)
    assert json.loads(decision)["reason"] == "no_rule_for_kind"


def test_outputs_of_a_record_get_one_producer_span_child_of_its_process_span(world) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    handler, changes, sink, _, _, topics = world
    record = changes.encode("runs", "u", dict(RUN, status="completed"),
                            dict(RUN, status="running"), lsn=778)
    asyncio.run(handler.handle(_raw(record, 6)))
    memory.shutdown()  # stop recording: later tests' spans are not ours

    [process] = [s for s in memory.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    [send] = [s for s in memory.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert send.parent.span_id == process.context.span_id
    assert format(send.context.trace_id, "032x") == TRACE_ID
    assert send.name == "send" and send.attributes["messaging.batch.message_count"] == 2
    assert list(send.attributes["lab.topics"]) == sorted(
        ["lab.routed.hplc.completed", topics.decisions])
    for _, _, _, headers in sink.records:  # every output names the PRODUCER span as parent
        assert dict(headers)["traceparent"].decode().split("-")[2] == \
            format(send.context.span_id, "016x")


def test_the_worker_queues_jobs_in_batches_after_their_decisions_are_acked(world) -> None:
    handler, changes, _, runner, _, _ = world
    acks: dict[int, asyncio.Future] = {}

    class AckingSink(ListSink):
        """Deliveries complete when the test says so (the broker's acknowledgement)."""

        async def send(self, topic, key, value, headers):
            await super().send(topic, key, value, headers)
            future = asyncio.get_running_loop().create_future()
            acks[len(acks)] = future
            return future

    batches = []

    async def submit_many(requests):
        batches.append([r.job_key for r in requests])
        for request in requests:
            await runner.submit(request)

    handler.sink = AckingSink()
    runner.submit_many = submit_many
    handler.queuer = JobQueuer(handler._submit_all)
    records = [changes.encode("runs", "u", dict(RUN, id=f"run-{i}", status="completed"),
                              dict(RUN, id=f"run-{i}", status="running")) for i in range(3)]

    async def scenario():
        outputs = [await handler.handle(_raw(record, 30 + i)) for i, record in enumerate(records)]
        await asyncio.sleep(0.05)
        assert runner.requests == []  # nothing queued before its decision is stored
        for future in acks.values():
            future.set_result(None)
        await asyncio.gather(*[d for deliveries in outputs for d in deliveries])
        await handler.queuer.close()

    asyncio.run(scenario())
    assert len(runner.requests) == 3
    assert batches == [[r.job_key for r in runner.requests]]  # one transaction for three
