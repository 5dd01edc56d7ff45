"""Span helpers for Kafka messaging (OTel messaging conventions) and lab attribute names.

`send_span(tracer, topic=...)` wraps a produce: a PRODUCER span named
`send <topic>` whose context goes into the record's headers
(`inject_headers(headers)` inside the block). `process_span(tracer, topic=...,
headers=...)` wraps the handling of one consumed record: a CONSUMER span named
`process <topic>`, child of the record's creation context (one trace end to end)
and linked to it. The attribute setters take keyword-only arguments and return at
once when the span is not recording, so a sampled-out or disabled trace costs
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer

from tracing.propagation import HeadersInput, extract_headers

# -- attribute names -------------------------------------------------------------------------
# The current messaging conventions (semantic-conventions 1.27+, as the installed
# opentelemetry-semantic-conventions names them; tests/unit/test_tracing_semconv.py checks
# none of these is deprecated there). The older names they replace are in DEPRECATED_NAMES.
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_PARTITION = "messaging.destination.partition.id"  # a string
MESSAGING_OFFSET = "messaging.kafka.offset"
MESSAGING_KEY = "messaging.kafka.message.key"
MESSAGING_TOMBSTONE = "messaging.kafka.message.tombstone"
MESSAGING_CONSUMER_GROUP = "messaging.consumer.group.name"
MESSAGING_BATCH_COUNT = "messaging.batch.message_count"
MESSAGING_CLIENT_ID = "messaging.client.id"

LAB_TENANT_ID = "lab.tenant.id"
LAB_EXPERIMENT_ID = "lab.experiment.id"
LAB_TABLE = "lab.table"
LAB_OPERATION = "lab.operation"  # Debezium op: c/u/d/r/t
LAB_RULE_ID = "lab.rule.id"
LAB_JOB_ID = "lab.job.id"
LAB_JOB_BACKEND = "lab.job.backend"
LAB_JOB_EXIT_CODE = "lab.job.exit_code"
LAB_REPLAY_ID = "lab.replay.id"
BEELINE_TRACE_ID = "beeline.trace_id"
LAB_OFFSET_LAST = "lab.kafka.offset.last"  # a batch span's last offset in one partition
LAB_TOPICS = "lab.topics"
LAB_LINKED_RUNS = "lab.linked_runs"  # a batch span's linked trace runs (one link each)
# the connector's window span: how many transactions it links (one link each)
LAB_LINKED_TRANSACTIONS = "lab.linked_transactions"
LAB_TABLES = "lab.tables"

# old name -> current name (spans stored before the rename still show in `labstream trace`)
DEPRECATED_NAMES = {
    "messaging.kafka.destination.partition": MESSAGING_PARTITION,
    "messaging.kafka.message.offset": MESSAGING_OFFSET,
    "messaging.kafka.consumer.group": MESSAGING_CONSUMER_GROUP,
}

# what `labstream trace` shows next to a span, in this order
KEY_ATTRIBUTES = (
    MESSAGING_DESTINATION,
    MESSAGING_PARTITION,
    MESSAGING_OFFSET,
    LAB_OFFSET_LAST,
    MESSAGING_BATCH_COUNT,
    MESSAGING_KEY,
    LAB_EXPERIMENT_ID,
    LAB_RULE_ID,
    LAB_JOB_ID,
    LAB_JOB_EXIT_CODE,
    LAB_REPLAY_ID,
    *DEPRECATED_NAMES,  # spans stored before the rename
)


def key_to_str(key: bytes | str | None) -> str | None:
    """A record key as the conventions want it: text, or its hex form when it is binary
    (not UTF-8, or with control characters such as a Confluent-framed Avro key's NULs)."""
    if key is None or isinstance(key, str):
        return key
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return key.hex()
    return key.hex() if any(ord(char) < 32 for char in text) else text


def set_send_attributes(
    span: Span,
    *,
    topic: str,
    partition: int | None = None,
    key: bytes | str | None = None,
    tombstone: bool = False,
    client_id: str | None = None,
) -> None:
    if not span.is_recording():
        return
    span.set_attribute(MESSAGING_SYSTEM, "kafka")
    span.set_attribute(MESSAGING_OPERATION_TYPE, "send")
    span.set_attribute(MESSAGING_DESTINATION, topic)
    if partition is not None:
        span.set_attribute(MESSAGING_PARTITION, str(partition))
    key_text = key_to_str(key)
    if key_text is not None:
        span.set_attribute(MESSAGING_KEY, key_text)
    if tombstone:
        span.set_attribute(MESSAGING_TOMBSTONE, True)
    if client_id:
        span.set_attribute(MESSAGING_CLIENT_ID, client_id)


def set_delivery_attributes(span: Span, *, partition: int, offset: int) -> None:
    """Where the broker put the record (known only after the produce completes)."""
    if not span.is_recording():
        return
    span.set_attribute(MESSAGING_PARTITION, str(partition))
    span.set_attribute(MESSAGING_OFFSET, offset)


def process_attributes(
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | str | None = None,
    consumer_group: str | None = None,
) -> dict[str, Any]:
    """A CONSUMER span's messaging attributes, as one dict: given at span creation they
    cost one validation pass instead of a locked `set_attribute` each (the worker makes
    one such span per record)."""
    attributes: dict[str, Any] = {
        MESSAGING_SYSTEM: "kafka",
        MESSAGING_OPERATION_TYPE: "process",
        MESSAGING_DESTINATION: topic,
    }
    if partition is not None:
        attributes[MESSAGING_PARTITION] = str(partition)
    if offset is not None:
        attributes[MESSAGING_OFFSET] = offset
    key_text = key_to_str(key)
    if key_text is not None:
        attributes[MESSAGING_KEY] = key_text
    if consumer_group:
        attributes[MESSAGING_CONSUMER_GROUP] = consumer_group
    return attributes


def set_process_attributes(
    span: Span,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | str | None = None,
    consumer_group: str | None = None,
) -> None:
    if not span.is_recording():
        return
    span.set_attributes(process_attributes(topic=topic, partition=partition, offset=offset,
                                           key=key, consumer_group=consumer_group))


LAB_ATTRIBUTE_NAMES = {
    "tenant_id": LAB_TENANT_ID,
    "experiment_id": LAB_EXPERIMENT_ID,
    "table": LAB_TABLE,
    "operation": LAB_OPERATION,
    "rule_id": LAB_RULE_ID,
    "job_id": LAB_JOB_ID,
    "job_backend": LAB_JOB_BACKEND,
    "job_exit_code": LAB_JOB_EXIT_CODE,
    "replay_id": LAB_REPLAY_ID,
}


def set_lab_attributes(
    span: Span,
    *,
    tenant_id: str | None = None,
    experiment_id: str | None = None,
    table: str | None = None,
    operation: str | None = None,
    rule_id: str | None = None,
    job_id: str | None = None,
    job_backend: str | None = None,
    job_exit_code: int | None = None,
    replay_id: str | None = None,
) -> None:
    """`set_lab_attributes(span, experiment_id=..., job_id=...)` -> `lab.experiment.id`, ..."""
    if not span.is_recording():
        return
    values = {
        "tenant_id": tenant_id,
        "experiment_id": experiment_id,
        "table": table,
        "operation": operation,
        "rule_id": rule_id,
        "job_id": job_id,
        "job_backend": job_backend,
        "job_exit_code": job_exit_code,
        "replay_id": replay_id,
    }
    for name, value in values.items():
        if value is not None:
            span.set_attribute(LAB_ATTRIBUTE_NAMES[name], value)


@contextmanager
def send_span(
    tracer: Tracer,
    *,
    topic: str,
    key: bytes | str | None = None,
    partition: int | None = None,
    tombstone: bool = False,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A current PRODUCER span `send <topic>`; inject its context into the headers inside."""
    with tracer.start_as_current_span(
        f"send {topic}", kind=SpanKind.PRODUCER, attributes=dict(attributes or {})
    ) as span:
        set_send_attributes(span, topic=topic, partition=partition, key=key, tombstone=tombstone)
        yield span


@contextmanager
def batch_send_span(tracer: Tracer, *, topics: Sequence[str]) -> Iterator[Span]:
    """A current PRODUCER span for the records one unit of work writes (a worker's outputs
    for one input record): `send <topic>`, or `send` with `lab.topics` when they go to
    several topics; inject its context into the records' headers inside the block."""
    if not topics:  # nothing written: no span
        yield trace.get_current_span()
        return
    distinct = sorted(set(topics))
    name = f"send {distinct[0]}" if len(distinct) == 1 else "send"
    attributes: dict[str, Any] = {MESSAGING_SYSTEM: "kafka", MESSAGING_OPERATION_TYPE: "send",
                                  MESSAGING_OPERATION_NAME: "send"}
    if len(topics) > 1:
        attributes[MESSAGING_BATCH_COUNT] = len(topics)
    if len(distinct) == 1:
        attributes[MESSAGING_DESTINATION] = distinct[0]
    else:
        attributes[LAB_TOPICS] = distinct
    with tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
        yield span


@contextmanager
def run_send_span(tracer: Tracer) -> Iterator[Span]:
    """A current PRODUCER span for the outputs of a run of records (the batch worker);
    `finish_send_span` names it once the outputs are known."""
    attributes = {MESSAGING_SYSTEM: "kafka", MESSAGING_OPERATION_TYPE: "send",
                  MESSAGING_OPERATION_NAME: "send"}
    with tracer.start_as_current_span("send", kind=SpanKind.PRODUCER,
                                      attributes=attributes) as span:
        yield span


def finish_send_span(span: Span, counts: Mapping[str, int]) -> None:
    """`send <topic>` (or `send` + `lab.topics`) and the record count, as batch_send_span."""
    if not span.is_recording():
        return
    distinct = sorted(counts)
    if len(distinct) == 1:
        span.update_name(f"send {distinct[0]}")
        span.set_attribute(MESSAGING_DESTINATION, distinct[0])
    elif distinct:
        span.set_attribute(LAB_TOPICS, distinct)
    span.set_attribute(MESSAGING_BATCH_COUNT, sum(counts.values()))


def creation_link(creation_context: Context) -> Link | None:
    span_context = trace.get_current_span(creation_context).get_span_context()
    return Link(span_context) if span_context.is_valid else None


@contextmanager
def process_span(
    tracer: Tracer,
    *,
    topic: str,
    headers: HeadersInput,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | str | None = None,
    consumer_group: str | None = None,
    continue_trace: bool = True,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A current CONSUMER span `process <topic>` for one record.

    Child of the record's creation context when `continue_trace` (the default:
    one trace from the database to the job) and always linked to it; a replay
    passes `continue_trace=False` to start a new trace that links to the original.
    """
    creation_context = extract_headers(headers)
    link = creation_link(creation_context)
    with tracer.start_as_current_span(
        f"process {topic}",
        context=creation_context if continue_trace else Context(),
        kind=SpanKind.CONSUMER,
        links=[link] if link is not None else None,
        attributes={**process_attributes(topic=topic, partition=partition, offset=offset,
                                         key=key, consumer_group=consumer_group),
                    **(attributes or {})},
    ) as span:
        yield span
