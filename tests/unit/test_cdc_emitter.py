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
    def partition(self):
        return 0

    def offset(self):
        return 41


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
    assert exporter.get_finished_spans() == ()  # the span ends when Kafka acknowledges
    producer.ack_all()
    (span,) = exporter.get_finished_spans()
    assert span.name == "send lab.topic" and span.kind == SpanKind.PRODUCER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert span.attributes["messaging.destination.name"] == "lab.topic"
    assert span.attributes["messaging.kafka.message.offset"] == 41
    headers = dict(producer.sent[0][3])
    assert headers["traceparent"].decode() == \
        f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"
    assert tracker.advance() and tracker.confirmed_lsn == 500
