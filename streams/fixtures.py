"""Debezium-shaped CDC records of the lab tables, for tests, benchmarks and demos.

Built with the connector's own schema code (`connectors.schema.TableSchema`,
`connectors.envelope.build_change_event`, `connectors.serde.AvroSerializer`), so
the bytes are what `labstream cdc` writes: Confluent-framed Avro with Debezium's
names, keyed by the primary key. Values are given as PostgreSQL text, as
pgoutput would send them (`"12.500"`, `"2025-11-24 16:00:00+00"`, `'{"a": 1}'`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

from connectors.envelope import SourceInfo, build_change_event
from connectors.pgoutput import Relation, RelationColumn
from connectors.registry.base import SchemaRegistry
from connectors.schema import TableSchema
from connectors.serde import AvroSerializer

TEXT, BOOL, INT4, INT8, NUMERIC, TIMESTAMPTZ, JSONB = 25, 16, 23, 20, 1700, 1184, 3802


def _numeric(precision: int, scale: int) -> int:
    return ((precision << 16) | scale) + 4


# column name -> (type oid, type modifier, not null); the first column is the key
LAB_COLUMNS: dict[str, list[tuple[str, int, int, bool]]] = {
    "tenants": [("id", TEXT, -1, True), ("name", TEXT, -1, True), ("tier", TEXT, -1, True)],
    "experiments": [("id", TEXT, -1, True), ("tenant_id", TEXT, -1, True),
                    ("kind", TEXT, -1, True), ("status", TEXT, -1, True),
                    ("title", TEXT, -1, True), ("submitted_by", TEXT, -1, True),
                    ("protocol", JSONB, -1, True), ("priority", INT4, -1, True)],
    "instruments": [("id", TEXT, -1, True), ("name", TEXT, -1, True), ("kind", TEXT, -1, True),
                    ("location", TEXT, -1, True), ("status", TEXT, -1, True)],
    "runs": [("id", TEXT, -1, True), ("experiment_id", TEXT, -1, True),
             ("instrument_id", TEXT, -1, True), ("status", TEXT, -1, True),
             ("started_at", TIMESTAMPTZ, -1, False), ("finished_at", TIMESTAMPTZ, -1, False),
             ("result", JSONB, -1, False), ("error", TEXT, -1, False)],
    "samples": [("id", TEXT, -1, True), ("tenant_id", TEXT, -1, True),
                ("experiment_id", TEXT, -1, False), ("name", TEXT, -1, True),
                ("material", TEXT, -1, True)],
    "inventory_items": [("id", TEXT, -1, True), ("name", TEXT, -1, True), ("lot", TEXT, -1, True),
                        ("quantity", NUMERIC, _numeric(12, 3), True), ("unit", TEXT, -1, True),
                        ("reorder_level", NUMERIC, _numeric(12, 3), True),
                        ("expires_at", TIMESTAMPTZ, -1, False), ("location", TEXT, -1, True)],
    "sensor_readings": [("id", INT8, -1, True), ("sensor_id", TEXT, -1, True),
                        ("instrument_id", TEXT, -1, False), ("kind", TEXT, -1, True),
                        ("celsius", NUMERIC, _numeric(6, 2), False),
                        ("door_open", BOOL, -1, False), ("read_at", TIMESTAMPTZ, -1, True)],
    "trigger_rules": [("id", TEXT, -1, True), ("tenant_id", TEXT, -1, False),
                      ("enabled", BOOL, -1, True), ("event_kind", TEXT, -1, True),
                      ("condition", JSONB, -1, True), ("backend", TEXT, -1, True),
                      ("image", TEXT, -1, False), ("command", JSONB, -1, True),
                      ("env", JSONB, -1, True), ("timeout_s", INT4, -1, True),
                      ("max_concurrency", INT4, -1, True)],
}


class LabChanges:
    """Encodes lab-table changes as the connector would: (topic, key bytes, value bytes)."""

    def __init__(self, registry: SchemaRegistry, *, topic_prefix: str = "lab") -> None:
        self.topic_prefix = topic_prefix
        self.serializer = AvroSerializer(registry)
        self._schemas: dict[str, TableSchema] = {}
        self._lsn = itertools.count(int(time.time() * 1000) * 1000)

    def schema(self, table: str) -> TableSchema:
        if table not in self._schemas:
            columns = LAB_COLUMNS[table]
            relation = Relation(
                oid=16000 + len(self._schemas), namespace="public", name=table,
                replica_identity="f",
                columns=tuple(RelationColumn(index == 0, name, oid, modifier)
                              for index, (name, oid, modifier, _) in enumerate(columns)))
            self._schemas[table] = TableSchema.from_relation(
                relation, topic_prefix=self.topic_prefix, primary_key=[columns[0][0]],
                not_null_columns=[name for name, _, _, required in columns if required])
        return self._schemas[table]

    def topic(self, table: str) -> str:
        return self.schema(table).topic

    def encode(
        self,
        table: str,
        op: str,
        after: Mapping[str, Any] | None,
        before: Mapping[str, Any] | None = None,
        *,
        lsn: int | None = None,
        commit_ms: int | None = None,
    ) -> tuple[str, bytes | None, bytes | None]:
        """One change; `after`/`before` map column -> PostgreSQL text (missing = NULL)."""
        schema = self.schema(table)
        names = [name for name, *_ in LAB_COLUMNS[table]]

        def values(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
            if row is None:
                return None
            return schema.row_to_values([_text(row.get(name)) for name in names])

        commit_us = (commit_ms if commit_ms is not None else int(time.time() * 1000)) * 1000
        source = SourceInfo(name=self.topic_prefix, db="lab", schema="public", table=table,
                            ts_us=commit_us, lsn=lsn if lsn is not None else next(self._lsn))
        event = build_change_event(schema, op, values(before), values(after), source,  # type: ignore[arg-type]
                                   None)
        return event.topic, self.serializer.key_bytes(event), self.serializer.value_bytes(event)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


class MemoryRegistry:
    """A `SchemaRegistry` in a dict (unit tests, benchmarks)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}

    def register(self, subject: str, schema_str: str) -> int:
        existing = next((i for (s, text), i in self._ids.items() if text == schema_str), None)
        schema_id = existing or len(self._schemas) + 1
        self._ids[(subject, schema_str)] = schema_id
        self._schemas[schema_id] = schema_str
        return schema_id

    def get_schema(self, schema_id: int) -> str:
        return self._schemas[schema_id]

    def latest(self, subject: str) -> Any:
        return None
