"""Real pgoutput: unchanged TOAST ('u'), REPLICA IDENTITY FULL old tuples, TRUNCATE,
and the whole path to Avro through the database schema registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from connectors.envelope import SourceInfo, build_change_event
from connectors.pgoutput import (
    UNCHANGED_TOAST,
    Insert,
    Relation,
    Truncate,
    Update,
    decode_message,
)
from connectors.registry.db import DbSchemaRegistry
from connectors.schema import TableSchema
from connectors.serde import AvroDeserializer, AvroSerializer

pytestmark = pytest.mark.integration


@pytest.fixture
def changes(database_url: str, unique_name: str) -> Iterator[dict[str, Any]]:
    toast_table = f"public.codec_toast_{unique_name}"
    full_table = f"public.codec_full_{unique_name}"
    slot, publication = f"codec_slot_{unique_name}", f"codec_pub_{unique_name}"
    conn = psycopg.connect(database_url, autocommit=True)
    try:
        conn.execute(f"CREATE TABLE {toast_table} (id int PRIMARY KEY, big text, n int)")
        conn.execute(f"CREATE TABLE {full_table} (id int PRIMARY KEY, label text NOT NULL)")
        conn.execute(f"ALTER TABLE {full_table} REPLICA IDENTITY FULL")
        conn.execute(f"CREATE PUBLICATION {publication} FOR TABLE {toast_table}, {full_table}")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        big = conn.execute(
            "SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 600)"
        ).fetchone()[0]
        conn.execute(f"INSERT INTO {toast_table} VALUES (1, %s, 1)", (big,))
        conn.execute(f"UPDATE {toast_table} SET n = 2 WHERE id = 1")
        conn.execute(f"INSERT INTO {full_table} VALUES (1, 'before')")
        conn.execute(f"UPDATE {full_table} SET label = 'after' WHERE id = 1")
        conn.execute(f"TRUNCATE {full_table}")
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_get_binary_changes("
            "%s, NULL, NULL, 'proto_version', '1', 'publication_names', %s)",
            (slot, publication),
        ).fetchall()
        yield {"messages": [decode_message(bytes(r[0])) for r in rows], "big": big}
    finally:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = %s", (slot,))
        conn.execute(f"DROP PUBLICATION IF EXISTS {publication}")
        conn.execute(f"DROP TABLE IF EXISTS {toast_table}, {full_table}")
        conn.close()


def test_toast_full_identity_truncate_and_registry(
    changes: dict[str, Any], database_url: str, unique_name: str
) -> None:
    messages = changes["messages"]
    relations = {m.oid: m for m in messages if isinstance(m, Relation)}
    prefix = f"codec{unique_name}"
    tables = {
        # REPLICA IDENTITY FULL flags every column as key: the primary key comes from pg_index
        oid: TableSchema.from_relation(rel, topic_prefix=prefix, primary_key=["id"],
                                       not_null_columns={"id", "label"})
        for oid, rel in relations.items()
    }
    toast = next(t for t in tables.values() if t.table_name.startswith("codec_toast_"))
    full = next(t for t in tables.values() if t.table_name.startswith("codec_full_"))

    insert = next(m for m in messages
                  if isinstance(m, Insert) and m.relation_oid == toast.relation_oid)
    assert toast.row_to_values(insert.new)["big"] == changes["big"]
    update = next(m for m in messages
                  if isinstance(m, Update) and m.relation_oid == toast.relation_oid)
    assert update.new[1] is UNCHANGED_TOAST
    after = toast.row_to_values(update.new)
    assert after == {"id": 1, "big": "__debezium_unavailable_value", "n": 2}

    full_update = next(m for m in messages
                       if isinstance(m, Update) and m.relation_oid == full.relation_oid)
    assert full_update.old is not None and full_update.key is None
    assert full.row_to_values(full_update.old) == {"id": 1, "label": "before"}
    truncate = next(m for m in messages if isinstance(m, Truncate))
    assert truncate.relation_oids == (full.relation_oid,)

    registry = DbSchemaRegistry(database_url)
    try:
        serializer, deserializer = AvroSerializer(registry), AvroDeserializer(registry)
        source = SourceInfo(name=prefix, db="lab", schema="public", table=full.table_name,
                            ts_us=0, lsn=1, tx_id=1)
        event = build_change_event(full, "u", full.row_to_values(full_update.old),
                                   full.row_to_values(full_update.new), source, None, 1)
        value = deserializer.decode(serializer.value_bytes(event))
        assert value["before"] == {"id": 1, "label": "before"}
        assert value["after"] == {"id": 1, "label": "after"}
        assert deserializer.decode(serializer.key_bytes(event)) == {"id": 1}
        latest = registry.latest(f"{full.topic}-value")
        assert latest is not None and latest.version == 1
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM labstream.schema_registry WHERE subject LIKE %s",
                         (f"{prefix}.%",))
        registry.close()
