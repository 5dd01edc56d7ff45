"""Decode record bytes the way the connector wrote them: Avro (Confluent framing) or JSON.

Replay reads history, so it meets every format a topic ever held: Confluent-framed
Avro (schema fetched by id from the registry the connector used) and Debezium's
JsonConverter JSON (`{"schema": ..., "payload": ...}`, payload returned). A key that
is neither is read as UTF-8 text (decisions and routed topics use text keys);
any other value raises, and the caller marks the record `undecodable`.
"""

from __future__ import annotations

from typing import Any

from base.contracts.records import UndecodableBytes, decode_record_bytes, is_confluent_framed
from connectors.registry.base import SchemaRegistry
from replay.exceptions import ReplayError
from streams.avrodecode import FastAvroDeserializer


class UndecodableRecord(ReplayError):
    """Neither Confluent-framed Avro nor JSON."""


class EnvelopeDecoder:
    """`decode(topic, data, is_key=...)` for `ReplayRecord.decode`."""

    def __init__(self, registry: SchemaRegistry) -> None:
        # generated readers: fastavro's values at about a third of its cost
        self.avro = FastAvroDeserializer(registry)
        # what `decode` does with Confluent-framed Avro (first byte 0), for callers that
        # check the byte themselves (`ReplayRecord.decode`)
        self.avro_decode = self.avro.decode

    def decode(self, topic: str, data: bytes, *, is_key: bool) -> Any:
        if data[:1] == b"\x00":  # Confluent-framed Avro, as decode_record_bytes decides
            return self.avro.decode(data)
        try:
            return decode_record_bytes(data, self.avro.decode, is_key=is_key, where=topic)
        except UndecodableBytes as exc:
            raise UndecodableRecord(str(exc)) from exc

    def decode_fields(self, topic: str, data: bytes, fields: frozenset[str]) -> Any:
        """Only the top-level `fields` of an Avro record value (the others are skipped);
        other formats are decoded whole. Raises as `decode` does."""
        if is_confluent_framed(data):
            try:
                return self.avro.decode_fields(data, fields)
            except Exception as exc:  # reported as `decode` would report it
                raise UndecodableRecord(f"{topic}: {exc}") from exc
        return self.decode(topic, data, is_key=False)


def decoder_from_settings(database_url: str | None = None) -> EnvelopeDecoder:
    """The registry the connector uses (HTTP registry if configured, else the lab DB)."""
    from connectors.registry import registry_from_settings

    return EnvelopeDecoder(registry_from_settings(database_url=database_url))
