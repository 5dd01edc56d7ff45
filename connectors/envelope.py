"""Debezium change events: the envelope, tombstones, transaction and message events.

`build_change_event(table, op, before, after, source, transaction, ts_ms)` returns a
`ChangeEvent(topic, key, value, table)` whose `value` is the envelope payload as a
plain dict in Debezium's field order (`before`, `after`, `source`, `transaction`,
`op`, `ts_ms`, `ts_us`, `ts_ns`). Serialisers (`connectors.serde`) turn it into
Avro or JsonConverter bytes; nothing here knows about wire formats.

Consumers deduplicate on `(source.lsn, source.sequence)`: `sequence` is Debezium's
JSON string `["<last commit lsn>","<this event's lsn>"]`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from base.contracts.topics import message_topic, transaction_topic
from connectors.schema import (
    SOURCE_AVRO,
    SOURCE_CONNECT,
    TRANSACTION_BLOCK_AVRO,
    TRANSACTION_BLOCK_CONNECT,
    TableSchema,
)

DEBEZIUM_VERSION = "3.6.1.Final-labstream"  # what `source.version` says (Debezium-compatible)
CONNECTOR = "postgresql"
Op = Literal["c", "u", "d", "r", "t", "m"]
SnapshotFlag = Literal[
    "true", "first", "first_in_data_collection", "last_in_data_collection", "last", "false",
    "incremental",
]


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """The `source` block (io.debezium.connector.postgresql.Source)."""

    name: str  # the logical server name (topic prefix)
    db: str
    schema: str
    table: str
    ts_us: int  # commit time in the database (snapshot: read time), Unix microseconds
    lsn: int | None
    tx_id: int | None = None
    last_commit_lsn: int | None = None  # first half of `sequence`
    snapshot: SnapshotFlag = "false"
    xmin: int | None = None
    version: str = DEBEZIUM_VERSION
    connector: str = CONNECTOR

    @property
    def sequence(self) -> str:
        """Debezium's `["<lastCommitLsn>","<currentLsn>"]` as a JSON string (nulls allowed)."""
        # what json.dumps writes for [str|None, str|None]: LSNs are digits, nothing to escape
        last = "null" if self.last_commit_lsn is None else f'"{self.last_commit_lsn}"'
        current = "null" if self.lsn is None else f'"{self.lsn}"'
        return f"[{last},{current}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "connector": self.connector,
            "name": self.name,
            "ts_ms": self.ts_us // 1000,
            "snapshot": self.snapshot,
            "db": self.db,
            "sequence": self.sequence,
            "ts_us": self.ts_us,
            "ts_ns": self.ts_us * 1000,
            "schema": self.schema,
            "table": self.table,
            "txId": self.tx_id,
            "lsn": self.lsn,
            "xmin": self.xmin,
            "origin": None,
            "origin_lsn": None,
        }


class SourceBlocks:
    """The `source` blocks of one transaction's rows of one table.

    Every field but `lsn` (and `sequence`, which holds it) is the transaction's, so a
    row's block is a copy of one template with those two set: ~1 us per row cheaper
    than a frozen SourceInfo and its `to_dict` (docs/BENCHMARKS.md, CDC speed).
    """

    __slots__ = ("_head", "_template")

    def __init__(self, info: SourceInfo) -> None:
        self._template = info.to_dict()
        last = info.last_commit_lsn
        self._head = "[null," if last is None else f'["{last}",'

    def at(self, lsn: int) -> dict[str, Any]:
        """`info.to_dict()` of the same SourceInfo with `lsn` replaced."""
        block = self._template.copy()
        block["sequence"] = f'{self._head}"{lsn}"]'
        block["lsn"] = lsn
        return block


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    """The envelope's `transaction` block (event.block)."""

    id: str  # "<txId>:<lsn>" as Debezium writes it
    total_order: int
    data_collection_order: int

    @staticmethod
    def transaction_id(tx_id: int, lsn: int) -> str:
        return f"{tx_id}:{lsn}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "total_order": self.total_order,
            "data_collection_order": self.data_collection_order,
        }


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One Kafka record to produce: topic, key dict (or None), value dict (or None)."""

    topic: str
    key: dict[str, Any] | None
    value: dict[str, Any] | None
    table: TableSchema | None = None
    # For events without a TableSchema (transaction, message): their fixed schemas.
    schemas: FixedSchemas | None = field(default=None)
    # Kafka headers Debezium sets itself (`__debezium.oldkey` / `__debezium.newkey`)
    headers: tuple[tuple[str, bytes], ...] | None = None


def now_us() -> int:
    return time.time_ns() // 1000


def build_change_event(
    table: TableSchema,
    op: Op,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: SourceInfo | dict[str, Any],
    transaction: TransactionInfo | None,
    ts_ms: int | None = None,
    *,
    ts_us: int | None = None,
) -> ChangeEvent:
    """A row event for `table`; the key comes from `after` (or `before` for deletes).
    `source` is a SourceInfo or its block already as a dict (`SourceBlocks.at`).

    `ts_ms`/`ts_us` are when the connector processed the event (defaults: now).
    Truncate events (`op='t'`) have no key, no before and no after.
    """
    processed_us = ts_us if ts_us is not None else (
        ts_ms * 1000 if ts_ms is not None else now_us()
    )
    value = {
        "before": before,
        "after": after,
        "source": source if isinstance(source, dict) else source.to_dict(),
        "transaction": transaction.to_dict() if transaction is not None else None,
        "op": op,
        "ts_ms": processed_us // 1000,
        "ts_us": processed_us,
        "ts_ns": processed_us * 1000,
    }
    key = None if op == "t" else table.key_of(after if after is not None else before)
    return ChangeEvent(table.topic, key, value, table)


def tombstone_for(event: ChangeEvent) -> ChangeEvent:
    """The tombstone that follows a delete: same key, value None (for log compaction)."""
    return ChangeEvent(event.topic, event.key, None, event.table, event.schemas, event.headers)


# --- fixed-schema events: transaction metadata and logical decoding messages ----


@dataclass(frozen=True, slots=True)
class FixedSchemas:
    """Key/value schemas of an event type that does not depend on a table."""

    subject_base: str  # normally the topic
    key_avro: dict[str, Any] | None
    value_avro: dict[str, Any]
    key_connect: dict[str, Any] | None
    value_connect: dict[str, Any]


_EVENT_COLLECTION_AVRO = {
    "type": "record",
    "name": "collection",
    "namespace": "event",
    "fields": [
        {"name": "data_collection", "type": "string"},
        {"name": "event_count", "type": "long"},
    ],
    "connect.version": 1,
    "connect.name": "event.collection",
}

TRANSACTION_KEY_AVRO = {
    "type": "record",
    "name": "TransactionMetadataKey",
    "namespace": "io.debezium.connector.common",
    "fields": [{"name": "id", "type": "string"}],
    "connect.version": 1,
    "connect.name": "io.debezium.connector.common.TransactionMetadataKey",
}

TRANSACTION_VALUE_AVRO = {
    "type": "record",
    "name": "TransactionMetadataValue",
    "namespace": "io.debezium.connector.common",
    "fields": [
        {"name": "status", "type": "string"},
        {"name": "id", "type": "string"},
        {"name": "event_count", "type": ["null", "long"], "default": None},
        {
            "name": "data_collections",
            "type": ["null", {"type": "array", "items": ["null", _EVENT_COLLECTION_AVRO]}],
            "default": None,
        },
        {"name": "ts_ms", "type": "long"},
    ],
    "connect.version": 1,
    "connect.name": "io.debezium.connector.common.TransactionMetadataValue",
}

TRANSACTION_KEY_CONNECT = {
    "type": "struct",
    "fields": [{"type": "string", "optional": False, "field": "id"}],
    "optional": False,
    "name": "io.debezium.connector.common.TransactionMetadataKey",
    "version": 1,
}

TRANSACTION_VALUE_CONNECT = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "status"},
        {"type": "string", "optional": False, "field": "id"},
        {"type": "int64", "optional": True, "field": "event_count"},
        {
            "type": "array",
            "items": {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": False, "field": "data_collection"},
                    {"type": "int64", "optional": False, "field": "event_count"},
                ],
                "optional": True,
                "name": "event.collection",
                "version": 1,
            },
            "optional": True,
            "field": "data_collections",
        },
        {"type": "int64", "optional": False, "field": "ts_ms"},
    ],
    "optional": False,
    "name": "io.debezium.connector.common.TransactionMetadataValue",
    "version": 1,
}


def transaction_schemas(topic_prefix: str) -> FixedSchemas:
    return FixedSchemas(
        transaction_topic(topic_prefix), TRANSACTION_KEY_AVRO, TRANSACTION_VALUE_AVRO,
        TRANSACTION_KEY_CONNECT, TRANSACTION_VALUE_CONNECT,
    )


def transaction_begin_event(topic_prefix: str, transaction_id: str, ts_ms: int) -> ChangeEvent:
    value = {
        "status": "BEGIN", "id": transaction_id, "event_count": None,
        "data_collections": None, "ts_ms": ts_ms,
    }
    return ChangeEvent(
        transaction_topic(topic_prefix), {"id": transaction_id}, value,
        schemas=transaction_schemas(topic_prefix),
    )


def transaction_end_event(
    topic_prefix: str, transaction_id: str, ts_ms: int, events_per_collection: dict[str, int]
) -> ChangeEvent:
    """`events_per_collection`: `"<schema>.<table>" -> count`, in first-seen order."""
    value = {
        "status": "END",
        "id": transaction_id,
        "event_count": sum(events_per_collection.values()),
        "data_collections": [
            {"data_collection": name, "event_count": count}
            for name, count in events_per_collection.items()
        ],
        "ts_ms": ts_ms,
    }
    return ChangeEvent(
        transaction_topic(topic_prefix), {"id": transaction_id}, value,
        schemas=transaction_schemas(topic_prefix),
    )


MESSAGE_KEY_AVRO = {
    "type": "record",
    "name": "MessageKey",
    "namespace": "io.debezium.connector.postgresql",
    "fields": [{"name": "prefix", "type": ["null", "string"], "default": None}],
    "connect.version": 1,
    "connect.name": "io.debezium.connector.postgresql.MessageKey",
}

MESSAGE_VALUE_AVRO = {
    "type": "record",
    "name": "MessageValue",
    "namespace": "io.debezium.connector.postgresql",
    "fields": [
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": None},
        {"name": "source", "type": SOURCE_AVRO},
        {"name": "transaction", "type": ["null", TRANSACTION_BLOCK_AVRO], "default": None},
        {
            "name": "message",
            "type": {
                "type": "record",
                "name": "Message",
                "fields": [
                    {"name": "prefix", "type": ["null", "string"], "default": None},
                    {"name": "content", "type": ["null", "bytes"], "default": None},
                ],
                "connect.version": 1,
                "connect.name": "io.debezium.connector.postgresql.Message",
            },
        },
    ],
    "connect.version": 1,
    "connect.name": "io.debezium.connector.postgresql.MessageValue",
}

MESSAGE_KEY_CONNECT = {
    "type": "struct",
    "fields": [{"type": "string", "optional": True, "field": "prefix"}],
    "optional": False,
    "name": "io.debezium.connector.postgresql.MessageKey",
    "version": 1,
}

MESSAGE_VALUE_CONNECT = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
        SOURCE_CONNECT,
        TRANSACTION_BLOCK_CONNECT,
        {
            "type": "struct",
            "fields": [
                {"type": "string", "optional": True, "field": "prefix"},
                {"type": "bytes", "optional": True, "field": "content"},
            ],
            "optional": False,
            "name": "io.debezium.connector.postgresql.Message",
            "version": 1,
            "field": "message",
        },
    ],
    "optional": False,
    "name": "io.debezium.connector.postgresql.MessageValue",
    "version": 1,
}


def message_schemas(topic_prefix: str) -> FixedSchemas:
    return FixedSchemas(
        message_topic(topic_prefix), MESSAGE_KEY_AVRO, MESSAGE_VALUE_AVRO,
        MESSAGE_KEY_CONNECT, MESSAGE_VALUE_CONNECT,
    )


def message_event(
    topic_prefix: str,
    prefix: str,
    content: bytes,
    source: SourceInfo,
    transaction: TransactionInfo | None = None,
    ts_ms: int | None = None,
) -> ChangeEvent:
    """A logical decoding message (`pg_logical_emit_message`) as Debezium's op 'm' event.

    `source.schema` and `source.table` are "" and `source.tx_id` is None for
    non-transactional messages, as Debezium documents.
    """
    value = {
        "op": "m",
        "ts_ms": ts_ms if ts_ms is not None else now_us() // 1000,
        "source": source.to_dict(),
        "transaction": transaction.to_dict() if transaction is not None else None,
        "message": {"prefix": prefix, "content": content},
    }
    return ChangeEvent(
        message_topic(topic_prefix), {"prefix": prefix}, value,
        schemas=message_schemas(topic_prefix),
    )
