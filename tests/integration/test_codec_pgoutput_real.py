"""Decode real pgoutput bytes from a temporary slot and check the converted values.

A table with every mapped type gets odd values inserted, updated and deleted; the
changes are read with pg_logical_slot_get_binary_changes (proto_version 1, messages on)
and run through decode_message -> TableSchema -> build_change_event -> Avro and back.
Slot, publication, table and types are unique per test and dropped afterwards.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from typing import Any

import psycopg
import pytest

from connectors.envelope import SourceInfo, build_change_event
from connectors.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Relation,
    Update,
    decode_message,
)
from connectors.pgtypes import fetch_type_info
from connectors.schema import TableSchema
from connectors.serde import AvroDeserializer, AvroSerializer, JsonConverterSerializer

pytestmark = pytest.mark.integration

COLUMNS_SQL = """
    id serial PRIMARY KEY,
    i2 int2, i4 int4 NOT NULL, i8 int8, ok bool, f4 float4, f8 float8,
    n numeric(30,3), nv numeric, price {domain}, cash money,
    t text, vc varchar(20), bp char(3), raw bytea,
    d date, tm time, tm3 time(3), ts timestamp, ts3 timestamp(3), tstz timestamptz, ttz timetz,
    iv interval, j json, jb jsonb, u uuid, mood {enum}, moods {enum}[], ints int4[], texts text[],
    ip inet, net cidr, mac macaddr, doc xml, pt point, b4 bit(4), vb varbit, r int4range,
    q tsquery
"""

INSERT_SQL = """
INSERT INTO {table} (i2, i4, i8, ok, f4, f8, n, nv, price, cash, t, vc, bp, raw, d, tm, tm3, ts,
                     ts3, tstz, ttz, iv, j, jb, u, mood, moods, ints, texts, ip, net, mac, doc,
                     pt, b4, vb, r, q)
VALUES (-32768, 2147483647, -9223372036854775808, true, 'NaN', '-Infinity',
        '123456789012345678901234567.125', '-0.000000000000000000000000000001', 9.99,
        '-1234.56', 'héllo ✓ "q" \\ b', 'x', 'ab', '\\x00ff10'::bytea,
        '0044-03-15 BC', '24:00:00', '12:34:56.789', '2018-06-20 15:13:16.945104',
        '2018-06-20 15:13:16.945', '2024-02-29 23:30:00.5+00', '12:00:00+05:30',
        '1 year 2 mons 3 days 04:05:06.789', '{{"a": [1, null]}}', '{{"b": "é"}}',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '{{sad,happy}}', '{{1,NULL,3}}',
        '{{"",NULL,"NULL","a,b","q\\"t"}}', '192.168.0.1/24', '10.0.0.0/8',
        '08:00:2b:01:02:03', '<a>1</a>', '(1.5,-2)', B'1010', B'101', '[1,5)', 'a & b')
"""

INSERT_EDGE_SQL = """
INSERT INTO {table} (i4, f8, n, nv, d, ts, tstz, iv, ints, texts)
VALUES (1, 'Infinity', 'NaN', 'NaN', 'infinity', '-infinity', '1999-12-31 23:59:59.999999-08',
        '-1 days +02:00:00', '{{}}', '{{}}')
"""


@pytest.fixture
def captured(database_url: str, unique_name: str) -> Iterator[dict[str, Any]]:
    table = f"public.codec_{unique_name}"
    enum, domain = f"codec_mood_{unique_name}", f"codec_price_{unique_name}"
    slot, publication = f"codec_slot_{unique_name}", f"codec_pub_{unique_name}"
    conn = psycopg.connect(database_url, autocommit=True)
    try:
        conn.execute(f"CREATE TYPE {enum} AS ENUM ('sad', 'ok', 'happy')")
        conn.execute(f"CREATE DOMAIN {domain} AS numeric(8,2)")
        conn.execute(f"CREATE TABLE {table} ({COLUMNS_SQL.format(domain=domain, enum=enum)})")
        conn.execute(f"CREATE PUBLICATION {publication} FOR TABLE {table}")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        conn.execute(INSERT_SQL.format(table=table))
        conn.execute(INSERT_EDGE_SQL.format(table=table))
        with conn.transaction():
            conn.execute(f"UPDATE {table} SET t = 'changed', ints = NULL WHERE id = 1")
            conn.execute("SELECT pg_logical_emit_message(true, 'traceparent', 'tp-1')")
        conn.execute(f"DELETE FROM {table} WHERE id = 2")
        # Text output follows this session's settings: a non-UTC zone exercises offsets.
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        rows = conn.execute(
            "SELECT lsn::text, xid, data FROM pg_logical_slot_get_binary_changes("
            "%s, NULL, NULL, 'proto_version', '1', 'publication_names', %s, 'messages', 'true')",
            (slot, publication),
        ).fetchall()
        yield {"conn": conn, "rows": rows, "table": table}
    finally:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = %s", (slot,))
        conn.execute(f"DROP PUBLICATION IF EXISTS {publication}")
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"DROP DOMAIN IF EXISTS {domain}")
        conn.execute(f"DROP TYPE IF EXISTS {enum}")
        conn.close()


def unscaled(data: bytes, scale: int) -> Decimal:
    return Decimal(f"{int.from_bytes(data, 'big', signed=True)}E{-scale}")


def test_real_pgoutput_bytes_decode_to_debezium_values(captured: dict[str, Any]) -> None:
    conn = captured["conn"]
    messages = [decode_message(bytes(row[2])) for row in captured["rows"]]
    kinds = [type(m).__name__ for m in messages]
    # Other sessions' logical messages (messages 'true' is database-wide) may be interleaved.
    assert kinds.count("Begin") == kinds.count("Commit") >= 4
    relation = next(m for m in messages if isinstance(m, Relation))
    assert relation.name == captured["table"].split(".")[1]
    assert [c.name for c in relation.columns if c.is_key] == ["id"]
    not_null = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnotnull AND attnum > 0",
        (relation.oid,))}
    table = TableSchema.from_relation(
        relation, topic_prefix="lab", resolver=partial(fetch_type_info, conn),
        not_null_columns=not_null,
    )
    inserts = [m for m in messages if isinstance(m, Insert)]
    row = table.row_to_values(inserts[0].new)

    assert (row["i2"], row["i4"], row["i8"], row["ok"]) == (-32768, 2**31 - 1, -(2**63), True)
    assert math.isnan(row["f4"]) and row["f8"] == -math.inf
    assert unscaled(row["n"], 3) == Decimal("123456789012345678901234567.125")
    assert row["nv"]["scale"] == 30
    assert unscaled(row["nv"]["value"], 30) == Decimal("-1E-30")
    assert unscaled(row["price"], 2) == Decimal("9.99")
    assert unscaled(row["cash"], 2) == Decimal("-1234.56")
    assert row["t"] == 'héllo ✓ "q" \\ b'
    assert (row["vc"], row["bp"]) == ("x", "ab ")
    assert row["raw"] == b"\x00\xff\x10"
    assert row["d"] == -735_160  # 0044-03-15 BC: astronomical year -43
    assert row["tm"] == 86_400_000_000
    assert row["tm3"] == 45_296_789  # time(3) -> io.debezium.time.Time, milliseconds
    assert row["ts"] == 1529507596945104  # Debezium docs' TIMESTAMP example
    assert row["ts3"] == 1529507596945
    assert row["tstz"] == "2024-02-29T23:30:00.500000Z"  # printed in Asia/Kolkata, emitted UTC
    assert row["ttz"] == "06:30:00Z"
    # Debezium's MicroDuration arithmetic (doubles): ((14 months * 30.4375 + 3 days) ...)
    assert row["iv"] == int(((((14 * 30.4375 + 3) * 24 + 4) * 60 + 5) * 60 + 6.789) * 1e6)
    assert json.loads(row["j"]) == {"a": [1, None]} and json.loads(row["jb"]) == {"b": "é"}
    assert row["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert (row["mood"], row["moods"]) == ("happy", ["sad", "happy"])
    assert row["ints"] == [1, None, 3]
    assert row["texts"] == ["", None, "NULL", "a,b", 'q"t']
    assert (row["ip"], row["net"], row["mac"]) == ("192.168.0.1/24", "10.0.0.0/8",
                                                   "08:00:2b:01:02:03")
    assert row["doc"] == "<a>1</a>"
    assert (row["pt"]["x"], row["pt"]["y"]) == (1.5, -2.0)
    assert (row["b4"], row["vb"]) == (b"\x0a", b"\x05")
    assert row["r"] == "[1,5)"
    assert row["q"] == "'a' & 'b'"  # tsquery is not mapped: text, one warning

    edge = table.row_to_values(inserts[1].new)
    assert edge["f8"] == math.inf
    assert edge["n"] is None and edge["nv"] is None  # NaN has no Decimal value (Debezium)
    assert edge["d"] == -2_147_472_692  # Debezium's 'infinity' date: -5877611-06-21
    assert edge["ts"] == -9223372036832400000
    assert edge["tstz"] == "2000-01-01T07:59:59.999999Z"
    assert edge["iv"] == -86_400_000_000 + 7_200_000_000
    assert (edge["ints"], edge["texts"]) == ([], [])
    assert edge["i2"] is None  # nullable column left NULL

    update = next(m for m in messages if isinstance(m, Update))
    assert update.old is None  # REPLICA IDENTITY DEFAULT, key unchanged: no old tuple
    updated = table.row_to_values(update.new)
    assert updated["t"] == "changed" and updated["ints"] is None
    message = next(m for m in messages if isinstance(m, Message) and m.content == b"tp-1")
    assert (message.prefix, message.content) == ("traceparent", b"tp-1")
    assert message.transactional
    delete = next(m for m in messages if isinstance(m, Delete))
    before = table.row_to_values(delete.key)
    assert before["id"] == 2 and before["i4"] == 0  # required non-key column: fallback
    assert before["t"] is None

    first_insert = messages.index(inserts[0])
    begin = next(m for m in reversed(messages[:first_insert]) if isinstance(m, Begin))
    commit = next(m for m in messages[first_insert:] if isinstance(m, Commit))
    assert commit.commit_lsn == begin.final_lsn
    source = SourceInfo(name="lab", db="lab", schema=table.schema_name, table=table.table_name,
                        ts_us=begin.commit_time_us, lsn=begin.final_lsn, tx_id=begin.xid)
    registry_schemas: dict[int, str] = {}

    class Registry:
        def register(self, subject: str, schema_str: str) -> int:
            registry_schemas[len(registry_schemas) + 1] = schema_str
            return len(registry_schemas)

        def get_schema(self, schema_id: int) -> str:
            return registry_schemas[schema_id]

        def latest(self, subject: str) -> None:
            return None

    for values in (row, edge, updated, before):
        event = build_change_event(table, "c", None, values, source, None, 1)
        decoded = AvroDeserializer(Registry()).decode(AvroSerializer(Registry()).value_bytes(event))
        assert decoded["after"]["id"] == values["id"]
        assert json.loads(JsonConverterSerializer().value_bytes(event))["payload"]["op"] == "c"
