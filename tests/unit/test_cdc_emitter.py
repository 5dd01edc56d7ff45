from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from connectors.serde import AvroDeserializer, AvroSerializer, JsonConverterSerializer
from connectors.source.emitter import Emitter
from connectors.source.events import OutEvent
from connectors.source.heartbeat import heartbeat_event
from connectors.source.producer import DeliveryTracker
from tracing.propagation import context_from_db_messages

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


class MemoryRegistry:
    def __init__(self):
        self.schemas: dict[int, str] = {}

    def register(self, subject, schema_str):
        for schema_id, text in self.schemas.items():
            if text == schema_str:
                return schema_id
        self.schemas[len(self.schemas) + 1] = schema_str
        return len(self.schemas)

    def get_schema(self, schema_id):
        return self.schemas[schema_id]

    def latest(self, subject):
        return None


class FakeMessage:
    def __init__(self, topic="lab.topic", partition=0, offset=41):
        self._where = (topic, partition, offset)

    def topic(self):
        return self._where[0]

    def partition(self):
        return self._where[1]

    def offset(self):
        return self._where[2]


class FakeProducer:
    def __init__(self):
        self.sent = []

    def produce(self, topic, key, value, headers, on_delivery):
        self.sent.append((topic, key, value, headers, on_delivery))

    def ack_all(self):
        for *_, on_delivery in self.sent:
            on_delivery(None, FakeMessage())


def _emitter(serializer, tracer=None):
    producer = FakeProducer()
    topics = []
    return Emitter(producer, serializer, topics.append, tracer=tracer), producer, topics


def test_heartbeat_records_serialize_in_both_formats():
    registry = MemoryRegistry()
    event = heartbeat_event("__labstream-heartbeat.lab", "lab", ts_ms=123)
    for serializer in (AvroSerializer(registry), JsonConverterSerializer()):
        emitter, producer, topics = _emitter(serializer)
        tracker = DeliveryTracker()
        ticket = tracker.open(0)
        emitter.emit(OutEvent(event, None), ticket)
        ticket.sealed = True
        assert topics == ["__labstream-heartbeat.lab"]
        (_, key, value, headers, _) = producer.sent[0]
        assert key and value and headers is None
    decoded = AvroDeserializer(registry).decode(
        AvroSerializer(registry).value_bytes(event))
    assert decoded == {"ts_ms": 123}


def test_traced_record_gets_a_producer_span_child_of_the_origin_and_its_headers():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emitter, producer, _ = _emitter(JsonConverterSerializer(), provider.get_tracer("t"))
    origin = context_from_db_messages(
        {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"})
    tracker = DeliveryTracker()
    ticket = tracker.open(500)
    emitter.emit(OutEvent(heartbeat_event("lab.topic", "lab"), origin), ticket)
    ticket.sealed = True
    emitter.end_batch()
    assert exporter.get_finished_spans() == ()  # the span ends when Kafka acknowledges
    producer.ack_all()
    (span,) = exporter.get_finished_spans()
    assert span.name == "send lab.topic" and span.kind == SpanKind.PRODUCER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert span.attributes["messaging.destination.name"] == "lab.topic"
    assert span.attributes["messaging.kafka.offset"] == 41
    assert span.attributes["messaging.destination.partition.id"] == "0"
    headers = dict(producer.sent[0][3])
    assert headers["traceparent"].decode() == \
        f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"
    assert tracker.advance() and tracker.confirmed_lsn == 500


def _traced(flags="01"):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emitter, producer, _ = _emitter(JsonConverterSerializer(), provider.get_tracer("t"))
    origin = context_from_db_messages(
        {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-{flags}"})
    return exporter, emitter, producer, origin


def test_a_transaction_of_many_records_gets_one_span_with_an_event_per_partition():
    exporter, emitter, producer, origin = _traced()
    tracker = DeliveryTracker()
    ticket = tracker.open(900)
    for _ in range(5):
        emitter.emit(OutEvent(heartbeat_event("lab.a", "lab"), origin), ticket)
    for _ in range(2):
        emitter.emit(OutEvent(heartbeat_event("lab.b", "lab"), origin), ticket)
    ticket.sealed = True
    emitter.end_batch()
    assert len({tuple(headers) for *_, headers, _ in producer.sent}) == 1  # one traceparent
    where = [("lab.a", 0, 10), ("lab.a", 1, 3), ("lab.a", 0, 11), ("lab.a", 0, 12),
             ("lab.a", 1, 4), ("lab.b", 0, 7), ("lab.b", 0, 8)]
    for (*_, on_delivery), msg in zip(producer.sent, where, strict=True):
        assert exporter.get_finished_spans() == ()  # ends with the last acknowledgement
        on_delivery(None, FakeMessage(*msg))
    (span,) = exporter.get_finished_spans()
    assert span.name == "send" and span.attributes["messaging.batch.message_count"] == 7
    assert list(span.attributes["lab.topics"]) == ["lab.a", "lab.b"]
    events = {(e.attributes["messaging.destination.name"],
               e.attributes["messaging.destination.partition.id"]):
              (e.attributes["messaging.kafka.offset"], e.attributes["lab.kafka.offset.last"],
               e.attributes["messaging.batch.message_count"]) for e in span.events}
    assert events == {("lab.a", "0"): (10, 12, 3), ("lab.a", "1"): (3, 4, 2),
                      ("lab.b", "0"): (7, 8, 2)}
    assert span.end_time >= span.events[0].timestamp
    assert tracker.advance() and tracker.confirmed_lsn == 900


def test_acks_before_the_batch_is_sealed_end_the_span_at_the_seal():
    exporter, emitter, producer, origin = _traced()
    ticket = DeliveryTracker().open(5)
    emitter.emit(OutEvent(heartbeat_event("lab.a", "lab"), origin), ticket)
    producer.ack_all()  # back-pressure: poll() ran inside the batch
    assert exporter.get_finished_spans() == ()
    emitter.end_batch()
    assert len(exporter.get_finished_spans()) == 1


def test_a_new_transaction_starts_a_new_span():
    exporter, emitter, producer, origin = _traced()
    tracker = DeliveryTracker()
    for lsn in (1, 2):
        ticket = tracker.open(lsn)
        emitter.emit(OutEvent(heartbeat_event("lab.a", "lab"), origin), ticket)
        ticket.sealed = True
        emitter.end_batch()
    producer.ack_all()
    spans = exporter.get_finished_spans()
    assert len(spans) == 2 and spans[0].context.span_id != spans[1].context.span_id


def test_an_unsampled_transaction_records_no_span_but_passes_its_context_on():
    exporter, emitter, producer, origin = _traced(flags="00")
    ticket = DeliveryTracker().open(5)
    emitter.emit(OutEvent(heartbeat_event("lab.a", "lab"), origin), ticket)
    emitter.end_batch()
    producer.ack_all()
    assert exporter.get_finished_spans() == ()
    traceparent = dict(producer.sent[0][3])["traceparent"].decode()
    assert traceparent.startswith(f"00-{TRACE_ID}-") and traceparent.endswith("-00")


def test_a_failed_delivery_marks_the_span_as_an_error_and_fails_the_ticket():
    exporter, emitter, producer, origin = _traced()
    tracker = DeliveryTracker()
    ticket = tracker.open(5)
    emitter.emit(OutEvent(heartbeat_event("lab.a", "lab"), origin), ticket)
    ticket.sealed = True
    emitter.end_batch()
    producer.sent[0][-1]("broker said no", None)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code.name == "ERROR" and "broker said no" in span.status.description
    assert tracker.error == "broker said no"
