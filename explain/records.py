"""Kafka records as explain's facts: CDC change records and trigger decisions.

Pure functions over kafka-python `ConsumerRecord`s (topic, partition, offset,
timestamp, key, value, headers): values are Confluent-framed Avro (decoded with the
registry the connector used) or JSON (Debezium's JsonConverter, the decisions topic).
"""

from __future__ import annotations

import json
import re
from typing import Any

from explain.kafkascan import header
from explain.model import CdcRecord, DecisionRecord
from streams.agents import REPLAY_HEADER_PREFIX

REPLAY_OF_HEADER = f"{REPLAY_HEADER_PREFIX}-of"  # replay/headers.py REPLAY_OF

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def trace_id_of(text: str) -> str | None:
    """The trace id of a 32-hex id or a traceparent; None for anything else."""
    value = text.strip().lower()
    if match := _TRACEPARENT.match(value):
        return match.group(1)
    return value if _HEX32.match(value) else None


def avro_deserializer(database_url: str) -> Any:
    from connectors.registry import registry_from_settings
    from connectors.serde import AvroDeserializer

    return AvroDeserializer(registry_from_settings(database_url=database_url))


def decode(deserializer: Any, data: bytes | None) -> Any:
    if data is None:
        return None
    if data[:1] == b"\x00":
        return deserializer.decode(data)
    parsed = json.loads(data)
    if isinstance(parsed, dict) and set(parsed) == {"schema", "payload"}:
        return parsed["payload"]
    return parsed


def trace_id_of_record(record: Any) -> str | None:
    raw = header(record, "traceparent")
    if raw is None:
        return None
    return trace_id_of(raw.decode("ascii", "replace"))


def cdc_record(record: Any, table: str, deserializer: Any) -> CdcRecord | None:
    """The CdcRecord of a kafka-python record of a CDC topic; None for a tombstone."""
    if record.value is None:
        return None
    key = decode(deserializer, record.key) if record.key is not None else None
    value = decode(deserializer, record.value) or {}
    row = value.get("after") or value.get("before") or {}
    source = value.get("source") or {}
    key_id = key.get("id") if isinstance(key, dict) else row.get("id")
    return CdcRecord(
        topic=record.topic, partition=record.partition, offset=record.offset,
        timestamp_ms=record.timestamp, table=table, key=str(key_id), op=str(value.get("op")),
        status=row.get("status"), source_ts_ms=source.get("ts_ms"),
        trace_id=trace_id_of_record(record),
        headers=tuple(name for name, _ in record.headers or ()),
        replay_of=_text(header(record, REPLAY_OF_HEADER)),
    )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def decision_record(raw: Any) -> DecisionRecord | None:
    try:
        value = json.loads(raw.value)
    except (TypeError, ValueError):
        return None
    if not isinstance(value, dict) or "outcome" not in value:
        return None
    origin = value.get("origin") or None
    return DecisionRecord(
        topic=raw.topic, partition=raw.partition, offset=raw.offset,
        outcome=str(value["outcome"]), reason=str(value.get("reason")),
        detail=str(value.get("detail") or ""), event_kind=value.get("event_kind"),
        event_id=str(value.get("event_id")), rule_id=value.get("rule_id"),
        job_key=value.get("job_key"), experiment_id=value.get("experiment_id"),
        tenant_id=value.get("tenant_id"),
        origin=(f"{origin['topic']}/{origin['partition']}/{origin['offset']}"
                if isinstance(origin, dict) else None),
        job_id=value.get("job_id"), trace_id=trace_id_of_record(raw),
        command=tuple(value.get("command") or ()),
    )
