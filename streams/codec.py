"""Bytes in and out of the worker.

In: CDC records are Confluent-framed Avro, read with readers generated per writer
schema (`streams.avrodecode.FastAvroDeserializer`, what fastavro returns at ≈ 1/3 of
its cost) with the registry from `connectors.registry.registry_from_settings()`; of
the value only the envelope fields the chain reads (`ENVELOPE_FIELDS`) are built.
`CdcDecoder.decode(...)` turns key + value bytes into a `ChangeRecord`, or raises
`UndecodableRecord` (the agent dead-letters it). Writer schemas are fetched once
per schema id; the fetch may block on the registry, so the async variant runs it
in a thread the first time an id is seen.

Out: routed events as Confluent-framed Avro with one schema per topic
(`streams.schemas`, subject `<topic>-value`), keyed by the source primary key;
decisions as UTF-8 JSON (documented in docs/topics.md), keyed by job key or
event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
from collections.abc import Iterable
from typing import Any

import fastavro

from connectors.avrowriter import UnsupportedSchema
from connectors.registry.base import SchemaRegistry
from connectors.serde import AvroDeserializer
from streams import schemas
from streams.avrodecode import FastAvroDeserializer
from streams.exceptions import UndecodableRecord
from streams.records import (
    ChangeEnvelope,
    ChangeRecord,
    Decision,
    Headers,
    RoutedEvent,
    SourceCoordinates,
    make_change_record,
    plain,
)

_HEADER = struct.Struct(">bI")
# what `ChangeEnvelope.from_value` reads; the rest (ts_us, ts_ns) is skipped, not built
ENVELOPE_FIELDS = frozenset({"op", "before", "after", "source", "ts_ms", "transaction"})


class CdcDecoder:
    def __init__(self, registry: SchemaRegistry) -> None:
        self._deserializer = FastAvroDeserializer(registry)

    def decode(
        self,
        key: bytes | None,
        value: bytes | None,
        coordinates: SourceCoordinates,
        headers: Headers = (),
    ) -> ChangeRecord | None:
        """The change in a CDC record; None for a tombstone (nothing to do)."""
        if value is None:
            return None
        try:
            decoded_value = self._deserializer.decode_fields(value, ENVELOPE_FIELDS)
            decoded_key = self._deserializer.decode(key) if key is not None else None
            envelope = ChangeEnvelope.from_value(decoded_value or {})
        except Exception as exc:  # any decoder failure means this record is poison
            raise UndecodableRecord(
                f"{coordinates.topic}[{coordinates.partition}]@{coordinates.offset} "
                f"cannot be decoded: {type(exc).__name__}: {exc}",
                hint="see the record on the dead-letter topic; was it written by labstream cdc?",
            ) from exc
        primary_key = decoded_key if isinstance(decoded_key, dict) else _key_from_row(envelope)
        return make_change_record(envelope, primary_key, coordinates, headers)

    async def decode_async(
        self,
        key: bytes | None,
        value: bytes | None,
        coordinates: SourceCoordinates,
        headers: Headers = (),
    ) -> ChangeRecord | None:
        readers = self._deserializer
        if readers.has_reader(key) and readers.has_reader(value, ENVELOPE_FIELDS):
            return self.decode(key, value, coordinates, headers)
        # first record of a schema: fetching it may block on the registry
        return await asyncio.get_running_loop().run_in_executor(
            None, self.decode, key, value, coordinates, headers)


def _key_from_row(envelope: ChangeEnvelope) -> dict[str, Any]:
    row = envelope.row or {}
    return {"id": row["id"]} if "id" in row else {}


class _CompiledRouted:
    """One kind's routed record as the connector's schema-compiled writer writes it
    (`connectors.avrowriter`: byte for byte fastavro's output, 2x faster), in two parts:
    the fields before `enrichment`, then `enrichment` (the last field). An Avro record is
    the concatenation of its fields, and the enrichment block of consecutive events is
    mostly the same reference rows, so its bytes are kept per (rows, by identity): the
    reference store replaces a row on change, never edits one in place."""

    MAX_CACHED = 4096

    def __init__(self, schema: dict[str, Any]) -> None:
        from connectors import speedups
        from connectors.avrowriter import compile_writer

        fields = schema["fields"]
        if fields[-1]["name"] != "enrichment":
            raise ValueError("the routed schema's last field must be enrichment")
        head_schema = {**schema, "fields": fields[:-1]}
        self._head = compile_writer(head_schema)
        self._enrichment = compile_writer(fields[-1]["type"])
        self._cache: dict[tuple[Any, ...], tuple[bytes, tuple[Any, ...]]] = {}
        # the connector's C writer (connectors/_speedups.c) for the head, if built: it
        # returns None for a value it does not take, and the Python writer writes that one
        self.fast = speedups.load()
        self._plan: Any = None
        if self.fast is not None:
            with contextlib.suppress(UnsupportedSchema):
                self._plan = speedups.avro_plan(head_schema)

    def value(self, header: bytes, event: RoutedEvent) -> bytes:
        """`header` (the Confluent framing) + the record."""
        if self.fast is not None and self._plan is not None:
            head = self.fast.avro(self._plan, header, schemas.routed_head(event,
                                                                         plain_payload=False))
            if head is not None:
                return bytes(head) + self._enrichment_bytes(event)
        buf = bytearray(header)
        self.write(buf, event)
        return bytes(buf)

    def write(self, buf: bytearray, event: RoutedEvent) -> None:
        """The record in Python (the compiled writer's reference)."""
        start = len(buf)
        try:  # the payload as routing built it: Avro-ready types in every kind today
            self._head(buf, schemas.routed_head(event, plain_payload=False))
        except (TypeError, AttributeError, ValueError, OverflowError, struct.error):
            del buf[start:]  # e.g. a Decimal where a double goes: the JSON-friendly copy
            self._head(buf, schemas.routed_head(event))
        buf += self._enrichment_bytes(event)

    def _enrichment_bytes(self, event: RoutedEvent) -> bytes:
        enrichment = event.enrichment
        rows = (enrichment.tenant, enrichment.experiment, enrichment.instrument,
                enrichment.inventory, *enrichment.samples)
        key = (enrichment.complete, tuple(enrichment.missing), *map(id, rows))
        cached = self._cache.get(key)
        if cached is None:
            block = bytearray()
            self._enrichment(block, schemas.enrichment_record(enrichment))
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            cached = self._cache[key] = (bytes(block), rows)  # rows: ids stay unique
        return cached[0]


class RoutedSerializer:
    """Routed events -> Confluent-framed Avro, schemas registered at start."""

    def __init__(self, registry: SchemaRegistry, topic_of_kind: dict[str, str]) -> None:
        self._registry = registry
        self._topic_of_kind = topic_of_kind
        self._writers: dict[str, tuple[bytes, Any]] = {}
        self._compiled: dict[str, _CompiledRouted] = {}

    def register_all(self) -> dict[str, int]:
        """Register every routed schema (blocking; call before the worker starts)."""
        ids = {}
        for kind, topic in self._topic_of_kind.items():
            schema = schemas.routed_schema(kind)
            schema_id = self._registry.register(f"{topic}-value", json.dumps(schema))
            self._writers[kind] = (_HEADER.pack(0, schema_id), fastavro.parse_schema(schema))
            with contextlib.suppress(UnsupportedSchema):  # else fastavro writes it
                self._compiled[kind] = _CompiledRouted(schema)
            ids[kind] = schema_id
        return ids

    def value(self, event: RoutedEvent) -> bytes:
        header = self._writers[event.kind][0]
        compiled = self._compiled.get(event.kind)
        if compiled is not None:
            return compiled.value(header, event)
        return self.value_fastavro(event)

    def value_fastavro(self, event: RoutedEvent) -> bytes:
        """The same bytes through fastavro (the reference the compiled writer is tested on)."""
        header, parsed = self._writers[event.kind]
        buffer = io.BytesIO()
        buffer.write(header)
        fastavro.schemaless_writer(buffer, parsed, schemas.routed_record(event))
        return buffer.getvalue()

    @staticmethod
    def key(event: RoutedEvent) -> bytes:
        return event.change.primary_key_text.encode()


def decode_routed(data: bytes, registry: SchemaRegistry) -> dict[str, Any] | None:
    """Read a routed record (consumers: see docs/examples/consume_routed.py)."""
    return AvroDeserializer(registry).decode(data)


def decision_value(decision: Decision) -> bytes:
    origin = decision.origin
    document = {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "detail": decision.detail,
        "event_kind": decision.event_kind,
        "event_id": decision.event_id,
        "rule_id": decision.rule_id,
        "job_key": decision.job_key,
        "tenant_id": decision.tenant_id,
        "experiment_id": decision.experiment_id,
        "command": list(decision.command),
        "decided_at_ms": decision.decided_at_ms,
        "origin": None if origin is None else {
            "topic": origin.topic, "partition": origin.partition, "offset": origin.offset},
        **{key: plain(value) for key, value in decision.extra.items()},
    }
    return json.dumps(document, separators=(",", ":"), default=str).encode()


def decision_key(decision: Decision) -> bytes:
    return (decision.job_key or decision.event_id).encode()


def header_tuples(headers: Any) -> Headers:
    """Faust/aiokafka headers (list of tuples or a mapping) as `((str, bytes), ...)`."""
    if not headers:
        return ()
    items: Iterable[tuple[Any, Any]] = headers.items() if hasattr(headers, "items") else headers
    return tuple(
        (str(name), raw if isinstance(raw, bytes) else str(raw).encode())
        for name, raw in items
        if raw is not None
    )
