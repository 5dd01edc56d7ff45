"""Kafka records as explain's facts: CDC change records and trigger decisions.

Pure functions over kafka-python `ConsumerRecord`s (topic, partition, offset,
timestamp, key, value, headers): values are Confluent-framed Avro (decoded with the
registry the connector used) or JSON (Debezium's JsonConverter, the decisions topic).
"""

from __future__ import annotations

import json
from typing import Any

from base.contracts.headers import REPLAY_OF, TRACEPARENT, header_text
from base.contracts.records import decode_record_bytes
from base.contracts.traceids import trace_id_of
from explain.model import CdcRecord, DecisionRecord


def avro_deserializer(database_url: str) -> Any:
    from connectors.registry import registry_from_settings
    from connectors.serde import AvroDeserializer

    return AvroDeserializer(registry_from_settings(database_url=database_url))


def decode(deserializer: Any, data: bytes | None) -> Any:
    # the deserializer is only needed (and may only exist) for Avro records
    return decode_record_bytes(data, lambda framed: deserializer.decode(framed))


def trace_id_of_record(record: Any) -> str | None:
    return trace_id_of(header_text(record.headers, TRACEPARENT))


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
        replay_of=header_text(record.headers, REPLAY_OF),
    )



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
