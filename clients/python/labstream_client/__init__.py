"""Read labstream's change topics from your own code.

- `Decoder`: record bytes -> typed values (Avro via any registry URL, or JSON).
- `ChangeEvent`, `Source`, `Transaction`, `TransactionMarker`: Debezium's envelope.
- `trace_context(headers)` / `otel_context(headers)`: join the record's trace.
- `ChangeConsumer` (extra `kafka`) and `LabstreamCodec` (extra `faust`), imported
  lazily so the core needs only fastavro and opentelemetry-api.
"""

from __future__ import annotations

from typing import Any

from labstream_client.decoding import DecodeError, Decoder, RegistryClient, from_connect_json
from labstream_client.envelope import (
    ChangeEvent,
    Message,
    Source,
    Transaction,
    TransactionMarker,
    typed,
)
from labstream_client.tracecontext import TraceContext, otel_context, trace_context

__all__ = [
    "ChangeConsumer",
    "ChangeEvent",
    "DecodeError",
    "Decoder",
    "LabstreamCodec",
    "Message",
    "Record",
    "RegistryClient",
    "Source",
    "TraceContext",
    "Transaction",
    "TransactionMarker",
    "from_connect_json",
    "otel_context",
    "trace_context",
    "typed",
]


def __getattr__(name: str) -> Any:
    if name in ("ChangeConsumer", "Record"):
        from labstream_client import consumer

        return getattr(consumer, name)
    if name == "LabstreamCodec":
        from labstream_client.faust_codec import LabstreamCodec

        return LabstreamCodec
    raise AttributeError(f"module 'labstream_client' has no attribute {name!r}")
