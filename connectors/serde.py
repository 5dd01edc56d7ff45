"""Change events -> Kafka record bytes: Confluent-framed Avro (default) or JsonConverter JSON.

- `AvroSerializer(registry)`: Avro binary behind Confluent framing (magic byte 0,
  4-byte big-endian schema id). Subjects follow TopicNameStrategy: `<topic>-key` /
  `<topic>-value`. Schemas are registered once per table version and cached, so the
  hot path is one dict lookup and one write with a schema-compiled writer
  (`connectors.avrowriter`, byte-identical to fastavro's, which is the fallback).
- `AvroDeserializer(registry).decode(data)`: the reverse, fetching writer schemas by id.
- `JsonConverterSerializer`: `{"schema": ..., "payload": ...}` as Kafka Connect's
  JsonConverter with `schemas.enable=true` writes Debezium events (`connectors.connectjson`:
  bytes base64, Java number text, Jackson escaping). The schema half is written once per
  table version; the payload by a writer compiled from the schema (`connectors.jsonwriter`,
  character-identical to `connectjson.dumps(value_converter(schema)(payload))`).

Nothing here reads or writes Kafka headers.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any, Literal, Protocol

import fastavro
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.contracts import records
from connectors import connectjson, jsonwriter, speedups
from connectors.avrowriter import Encoder, UnsupportedSchema, compile_writer
from connectors.envelope import ChangeEvent, FixedSchemas
from connectors.exceptions import CodecConfigError, SerializationError
from connectors.registry.base import SchemaRegistry

MAGIC_BYTE = records.MAGIC_BYTE
_HEADER = records.FRAME

SerializerName = Literal["avro", "json"]


class EventSerializer(Protocol):
    def key_bytes(self, event: ChangeEvent) -> bytes | None: ...

    def value_bytes(self, event: ChangeEvent) -> bytes | None: ...


def _schema_source(event: ChangeEvent) -> tuple[Any, dict[str, Any] | None, dict[str, Any]]:
    """(cache identity, key avro, value avro) of an event."""
    if event.table is not None:
        table = event.table
        return (table.topic, table.fingerprint), table.key_avro, table.value_avro
    if event.schemas is not None:
        fixed: FixedSchemas = event.schemas
        return (event.topic, "fixed", fixed.subject_base), fixed.key_avro, fixed.value_avro
    raise SerializationError(
        f"event for topic {event.topic!r} carries no schema",
        hint="build events with build_change_event / transaction_*_event / message_event",
    )


class _Writer:
    """A registered schema: framing header + a compiled writer (fastavro as fallback)."""

    __slots__ = ("encoder", "fast", "header", "parsed", "plan")

    def __init__(self, schema_id: int, schema: dict[str, Any]) -> None:
        self.header = _HEADER.pack(MAGIC_BYTE, schema_id)
        self.parsed = fastavro.parse_schema(schema)  # also validates the schema
        try:
            self.encoder: Encoder | None = compile_writer(schema)
        except UnsupportedSchema:
            self.encoder = None
        # the compiled writer (connectors/_speedups.c), if built; None -> Python only
        self.fast = speedups.load()
        try:
            self.plan: speedups.Plan | None = speedups.avro_plan(schema)
        except UnsupportedSchema:
            self.plan = None

    def write(self, record: dict[str, Any], topic: str) -> bytes:
        if self.fast is not None and self.plan is not None:
            written: bytes | None = self.fast.avro(self.plan, self.header, record)
            if written is not None:
                return written
            # not for C (a value of an unexpected type...): Python writes it or says why
        try:
            if self.encoder is not None:
                buf = bytearray(self.header)
                self.encoder(buf, record)
                return bytes(buf)
            buffer = io.BytesIO()
            buffer.write(self.header)
            fastavro.schemaless_writer(buffer, self.parsed, record)
            return buffer.getvalue()
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError,
                struct.error) as exc:
            raise SerializationError(
                f"record for {topic!r} does not match its Avro schema: {exc!r}",
                hint="a column value has an unexpected type; see docs/events.md type mapping",
            ) from exc


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, separators=(",", ":"))


class AvroSerializer:
    """Confluent-framed Avro with schemas registered under `<topic>-key`/`<topic>-value`."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._writers: dict[tuple[Any, str], _Writer | None] = {}

    def _writer(self, event: ChangeEvent, part: str) -> _Writer | None:
        identity, key_avro, value_avro = _schema_source(event)
        cache_key = (identity, part)
        writer = self._writers.get(cache_key, False)
        if writer is not False:
            return writer  # type: ignore[return-value]
        schema = key_avro if part == "key" else value_avro
        if schema is None:
            created = None
        else:
            schema_id = self.registry.register(f"{event.topic}-{part}", schema_text(schema))
            created = _Writer(schema_id, schema)
        self._writers[cache_key] = created
        return created

    def key_bytes(self, event: ChangeEvent) -> bytes | None:
        if event.key is None:
            return None
        writer = self._writer(event, "key")
        if writer is None:
            raise SerializationError(f"{event.topic}: key given but the table has no key schema")
        return writer.write(event.key, event.topic)

    def value_bytes(self, event: ChangeEvent) -> bytes | None:
        if event.value is None:
            return None
        writer = self._writer(event, "value")
        assert writer is not None
        return writer.write(event.value, event.topic)


class AvroDeserializer:
    """Confluent-framed Avro bytes -> dict, with writer schemas fetched by id and cached."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._parsed: dict[int, Any] = {}

    def schema_id(self, data: bytes) -> int:
        if len(data) < 5 or data[0] != MAGIC_BYTE:
            raise SerializationError(
                "record is not Confluent-framed Avro (magic byte 0 + 4-byte schema id)",
                hint="was it written with the JSON serializer? check LABSTREAM_CDC_SERIALIZER",
            )
        return int(_HEADER.unpack_from(data)[1])

    def decode(self, data: bytes | None) -> dict[str, Any] | None:
        if data is None:
            return None
        schema_id = self.schema_id(data)
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = fastavro.parse_schema(json.loads(self.registry.get_schema(schema_id)))
            self._parsed[schema_id] = parsed
        try:
            return fastavro.schemaless_reader(io.BytesIO(data[5:]), parsed, None)  # type: ignore[return-value]
        except (EOFError, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise SerializationError(
                f"Avro body does not match schema id {schema_id}: {exc}"
            ) from exc


# --- JsonConverter ------------------------------------------------------------


# (schema text head, Python payload encoder, plan of the compiled writer)
_JsonWriter = tuple[bytes, jsonwriter.JsonEncoder, speedups.Plan]


class JsonConverterSerializer:
    """Kafka Connect JsonConverter (`schemas.enable=true`) bytes for Debezium events."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, str], _JsonWriter | None] = {}
        self._fast = speedups.load()  # the compiled writer (connectors/_speedups.c) or None

    def _compiled(self, event: ChangeEvent, part: str) -> _JsonWriter | None:
        if event.table is not None:
            identity: Any = (event.table.topic, event.table.fingerprint)
            table = event.table
            schema = table.key_connect_schema if part == "key" else table.value_connect_schema
        elif event.schemas is not None:
            identity = (event.topic, "fixed")
            schema = event.schemas.key_connect if part == "key" else event.schemas.value_connect
        else:
            raise SerializationError(f"event for topic {event.topic!r} carries no schema")
        cache_key = (identity, part)
        if cache_key not in self._cache:
            # the schema half of every record is constant: written once, prefixed
            self._cache[cache_key] = None if schema is None else (
                f'{{"schema":{connectjson.dumps(schema)},"payload":'.encode(),
                jsonwriter.compile_encoder(schema),
                speedups.json_plan(schema),
            )
        return self._cache[cache_key]

    def _encode(self, event: ChangeEvent, part: str, payload: dict[str, Any]) -> bytes:
        compiled = self._compiled(event, part)
        if compiled is None:
            raise SerializationError(f"{event.topic}: {part} given but no {part} schema")
        head, encode, plan = compiled
        if self._fast is not None:
            written: bytes | None = self._fast.json(plan, head, payload)
            if written is not None:
                return written
            # not for C (a value of an unexpected type...): the Python writer's text
        return b"".join((head, encode(payload).encode(), b"}"))

    def key_bytes(self, event: ChangeEvent) -> bytes | None:
        return None if event.key is None else self._encode(event, "key", event.key)

    def value_bytes(self, event: ChangeEvent) -> bytes | None:
        return None if event.value is None else self._encode(event, "value", event.value)


# --- choosing one ---------------------------------------------------------------


class SerdeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABSTREAM_CDC_", frozen=True, extra="ignore")

    serializer: SerializerName = Field(
        default="avro",
        description="Record format: avro (Confluent framing + registry) or json "
        "(Debezium JsonConverter with schemas) (LABSTREAM_CDC_SERIALIZER).",
    )


def serializer_from_settings(
    name: str | None = None, *, registry: SchemaRegistry | None = None
) -> EventSerializer:
    """`avro` (default; registry from settings unless given) or `json`."""
    chosen = name or SerdeSettings().serializer
    if chosen == "json":
        return JsonConverterSerializer()
    if chosen == "avro":
        if registry is None:
            from connectors.registry import registry_from_settings

            registry = registry_from_settings()
        return AvroSerializer(registry)
    raise CodecConfigError(
        f"serializer {chosen!r} is not supported",
        hint="set LABSTREAM_CDC_SERIALIZER to avro or json",
    )
