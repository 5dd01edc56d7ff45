"""How the bytes of a labstream record are recognised and decoded: one rule for all readers.

A record's key or value is one of:
- Confluent-framed Avro: magic byte 0, a 4-byte big-endian schema id, the Avro body
  (CDC topics in the default `avro` mode, routed topics);
- Kafka Connect JsonConverter JSON, `{"schema": ..., "payload": ...}` (CDC topics in
  `json` mode): the payload is the value;
- plain JSON (decisions, dead letters) or, for keys only, UTF-8 text.

The Avro body is decoded by the caller's `avro` function (the connector's
`AvroDeserializer`, which fetches writer schemas from the registry by id), so this
module needs no registry and no project import.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

MAGIC_BYTE = 0
FRAME = struct.Struct(">bI")  # magic byte, schema id
FRAME_SIZE = FRAME.size


class UndecodableBytes(ValueError):
    """Neither Confluent-framed Avro nor JSON (nor, for a key, UTF-8 text)."""


def is_confluent_framed(data: bytes | None) -> bool:
    return data is not None and len(data) >= FRAME_SIZE and data[0] == MAGIC_BYTE


def framed_schema_id(data: bytes) -> int | None:
    """The schema id of Confluent-framed bytes; None for anything else."""
    if not is_confluent_framed(data):
        return None
    return int(FRAME.unpack_from(data)[1])


def frame_header(schema_id: int) -> bytes:
    return FRAME.pack(MAGIC_BYTE, schema_id)


def unwrap_connect_json(parsed: Any) -> Any:
    """The payload of a JsonConverter `{"schema", "payload"}` document; other JSON as is."""
    if isinstance(parsed, dict) and set(parsed) == {"schema", "payload"}:
        return parsed["payload"]
    return parsed


def decode_record_bytes(
    data: bytes | None,
    avro: Callable[[bytes], Any],
    *,
    is_key: bool = False,
    where: str = "record",
) -> Any:
    """The decoded key or value of a record (None stays None: a tombstone or no key)."""
    if data is None:
        return None
    if data[:1] == b"\x00":
        return avro(data)
    if data[:1] in (b"{", b"["):
        try:
            return unwrap_connect_json(json.loads(data))
        except ValueError as exc:
            raise UndecodableBytes(f"{where}: {'key' if is_key else 'value'} is not valid "
                                   f"JSON: {exc}") from exc
    if is_key:
        try:  # plain string keys: decisions, routed topics, dead letters
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    part = "key" if is_key else "value"
    raise UndecodableBytes(
        f"{where}: {part} is neither Confluent-framed Avro nor JSON "
        f"(first byte {data[:1].hex() or 'none'})"
    )
