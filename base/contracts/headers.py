"""Kafka header names and job environment names, and reading a header off a record.

Headers travel as `(name, bytes)` pairs (confluent-kafka, kafka-python, aiokafka
and Faust all use that shape). Names compare case-insensitively, as HTTP's do,
because beeline peers write `X-Honeycomb-Trace` and others `x-honeycomb-trace`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# W3C trace context (https://www.w3.org/TR/trace-context/), lower case on Kafka
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Honeycomb beeline propagation header
BEELINE = "X-Honeycomb-Trace"
# replay marks (docs/replay.md); the worker keeps every header with this prefix
REPLAY_PREFIX = "labstream-replay"
REPLAY_ID = "labstream-replay-id"
REPLAY_OF = "labstream-replay-of"
RERUN_SUCCEEDED = "labstream-replay-rerun-succeeded"
# a dead letter's origin and error (streams/deadletter.py writes them)
DLQ_ERROR = "labstream-dlq-error"
DLQ_TOPIC = "labstream-dlq-topic"
DLQ_PARTITION = "labstream-dlq-partition"
DLQ_OFFSET = "labstream-dlq-offset"
DLQ_REFERENCE = "labstream-dlq-reference"  # an output too large for Kafka: topic, bytes
# Debezium's headers on the records of a primary-key change
DEBEZIUM_OLDKEY = "__debezium.oldkey"
DEBEZIUM_NEWKEY = "__debezium.newkey"

# a job's environment (docs/jobs.md)
ENV_TRACEPARENT = "TRACEPARENT"
ENV_TRACESTATE = "TRACESTATE"
ENV_HONEYCOMB_TRACE = "HONEYCOMB_TRACE"  # the X-Honeycomb-Trace value, for beeline jobs

HeaderPairs = Iterable[tuple[str, Any]]


def header_bytes(headers: HeaderPairs | None, name: str) -> bytes | None:
    """The first value of header `name` (any case) as bytes; None when absent or null."""
    wanted = name.lower()
    for key, value in headers or ():
        if key.lower() != wanted or value is None:
            continue
        if isinstance(value, bytes):
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        return str(value).encode()
    return None


def header_text(headers: HeaderPairs | None, name: str) -> str | None:
    """The first value of header `name` (any case) as text (UTF-8, bad bytes replaced)."""
    raw = header_bytes(headers, name)
    return None if raw is None else raw.decode("utf-8", "replace")
