"""Connector-shaped change events for chosen rows (helper of test_replay_scenario; not a test).

The replay scenario needs CDC records of the lab tables under its *own* topic
prefix, so that its worker sees its rows only, not every other test's. Instead
of a second connector on the shared database, it emits, for rows it changed, the
records the connector would: the table's schema is built by the connector's own
code (`catalog` + `TableSchema.from_relation`), row values are converted by
`TableSchema.row_to_values` from PostgreSQL's text output (the connector's
session settings), `source.lsn` is the WAL position after the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from confluent_kafka import Producer

from connectors.envelope import SourceInfo, build_change_event
from connectors.registry import DbSchemaRegistry
from connectors.schema import TableSchema
from connectors.serde import AvroSerializer
from connectors.source import catalog

BOOL_OID = 16


class ConnectorShaped:
    def __init__(self, database_url: str, bootstrap: str, prefix: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True,
                                    options=catalog.SESSION_OPTIONS)
        self.prefix = prefix
        self.serializer = AvroSerializer(DbSchemaRegistry(database_url))
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        self.tables: dict[str, TableSchema] = {}

    def close(self) -> None:
        self.producer.flush(30)
        self.conn.close()

    def schema(self, table: str) -> TableSchema:
        if table not in self.tables:
            oid = self.conn.execute("SELECT %s::regclass::oid", (f"public.{table}",)).fetchone()[0]
            ref = catalog.TableRef(oid, "public", table)
            rows = self.conn.execute(catalog.RELATION_SQL, (oid,)).fetchall()
            relation = catalog.relation_from_rows(ref, rows)
            details = catalog.table_details(self.conn, oid)
            self.tables[table] = TableSchema.from_relation(
                relation, topic_prefix=self.prefix, resolver=details.types.get,
                not_null_columns=details.not_null, server_name=self.prefix,
                primary_key=details.primary_key or None)
        return self.tables[table]

    def row_text(self, table: str, row_id: str) -> list[str | None] | None:
        """The row as pgoutput would send it: each column's text form, in column order."""
        # each type's output function, as pgoutput sends it (bool::text is 'true', boolout 't')
        select = ", ".join(
            f"""CASE WHEN "{c.name}" THEN 't' WHEN NOT "{c.name}" THEN 'f' END"""
            if c.type_oid == BOOL_OID else f'"{c.name}"::text'
            for c in self.schema(table).columns
        )
        found = self.conn.execute(f"SELECT {select} FROM public.{table} WHERE id = %s",
                                  (row_id,)).fetchone()
        return list(found) if found is not None else None

    def emit(self, table: str, op: str, before: Sequence[str | None] | None,
             after: Sequence[str | None] | None, *, headers: Sequence[tuple[str, bytes]] = (),
             partition: int | None = None) -> None:
        schema = self.schema(table)
        lsn = int(str(self.conn.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0]))
        now_us = int(str(self.conn.execute(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint").fetchone()[0]))
        source = SourceInfo(name=self.prefix, db="lab", schema="public", table=table,
                            ts_us=now_us, lsn=lsn)
        event = build_change_event(
            schema, op,  # type: ignore[arg-type]
            schema.row_to_values(before) if before is not None else None,
            schema.row_to_values(after) if after is not None else None,
            source, None)
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        self.producer.produce(schema.topic, key=self.serializer.key_bytes(event),
                              value=self.serializer.value_bytes(event), headers=list(headers),
                              **extra)
        self.producer.flush(30)

    def created(self, table: str, row_id: str, **kwargs: Any) -> None:
        self.emit(table, "c", None, self.row_text(table, row_id), **kwargs)
