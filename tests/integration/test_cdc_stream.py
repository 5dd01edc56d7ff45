"""The connector against the real stack: every op, trace headers, restart, schema change."""

from __future__ import annotations

import pytest
from cdc_helpers import (
    Decoder,
    cdc_settings,
    cleanup,
    execute,
    offsets_row,
    read_topic,
    running,
    wait_for,
)

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def cdc(unique_name, database_url):
    settings = cdc_settings(unique_name)
    execute(database_url,
            f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY, name text NOT NULL, qty int)",
            f"ALTER TABLE public.{unique_name} REPLICA IDENTITY FULL",
            f"INSERT INTO public.{unique_name} VALUES (1, 'one', 10), (2, 'two', 20), "
            "(3, 'three', 30)")
    yield settings
    cleanup(settings, database_url)


def _topic(settings):
    return f"{settings.topic_prefix}.public.{settings.slot_name}"


def test_every_op_lands_in_kafka_and_decodes(cdc, database_url, kafka_bootstrap):
    table = f"public.{cdc.slot_name}"
    decode = Decoder(database_url)
    with running(cdc, database_url, kafka_bootstrap):
        read_topic(kafka_bootstrap, _topic(cdc), minimum=3)
        execute(database_url, f"INSERT INTO {table} VALUES (4, 'four', 40)")
        execute(database_url, f"UPDATE {table} SET qty = 11 WHERE id = 1")
        execute(database_url, f"DELETE FROM {table} WHERE id = 2")
        execute(database_url, "SELECT pg_logical_emit_message(true, 'audit', 'hello')",
                f"INSERT INTO {table} VALUES (5, 'five', 50)")
        execute(database_url, f"TRUNCATE {table}")  # skipped, as Debezium's default
        execute(database_url, f"INSERT INTO {table} VALUES (6, 'six', 60)")
        records = read_topic(kafka_bootstrap, _topic(cdc), minimum=9)
        messages = read_topic(kafka_bootstrap, f"{cdc.topic_prefix}.message", minimum=1)
    values = [decode(r.value()) for r in records]
    keys = [decode(r.key()) for r in records]
    ops = [v["op"] if v else None for v in values]
    assert ops == ["r", "r", "r", "c", "u", "d", None, "c", "c"][: len(ops)] and len(ops) == 9
    assert [v["source"]["snapshot"] for v in values[:3]] == ["first", "true", "last"]
    assert values[0]["after"] == {"id": 1, "name": "one", "qty": 10}
    assert values[3]["after"] == {"id": 4, "name": "four", "qty": 40} and keys[3] == {"id": 4}
    assert values[4]["before"]["qty"] == 10 and values[4]["after"]["qty"] == 11
    assert values[5]["before"]["id"] == 2 and values[5]["after"] is None
    assert keys[6] == {"id": 2} and records[6].value() is None  # tombstone
    assert keys[8] == {"id": 6}  # the record after the (skipped) TRUNCATE
    streamed = [v["source"] for v in values[3:] if v]
    assert all(s["snapshot"] == "false" and s["lsn"] and s["txId"] for s in streamed)
    assert len({(s["lsn"], s["sequence"]) for s in streamed}) == len(streamed)
    message = decode(messages[0].value())
    assert message["op"] == "m" and message["message"]["content"] == b"hello"
    assert message["source"]["txId"] == values[7]["source"]["txId"]


def test_trace_context_reaches_every_record_of_its_transaction(cdc, database_url,
                                                               kafka_bootstrap):
    table = f"public.{cdc.slot_name}"
    with running(cdc, database_url, kafka_bootstrap):
        read_topic(kafka_bootstrap, _topic(cdc), minimum=3)
        # the message comes mid-transaction: the earlier row must get it too
        execute(database_url,
                f"INSERT INTO {table} VALUES (10, 'a', 1)",
                f"SELECT pg_logical_emit_message(true, 'traceparent', '{TRACEPARENT}')",
                "SELECT pg_logical_emit_message(true, 'tracestate', 'lab=1')",
                f"UPDATE {table} SET qty = 2 WHERE id = 10",
                f"DELETE FROM {table} WHERE id = 3")
        execute(database_url, f"INSERT INTO {table} VALUES (11, 'untraced', 1)")
        records = read_topic(kafka_bootstrap, _topic(cdc), minimum=8)
    traced, untraced = records[3:7], records[7]
    for record in traced:
        headers = dict(record.headers() or [])
        assert headers["traceparent"].decode().split("-")[1] == TRACE_ID
        assert headers["tracestate"] == b"lab=1"
    assert not dict(untraced.headers() or {}).get("traceparent")


def test_restart_streams_on_without_a_second_snapshot(cdc, database_url, kafka_bootstrap):
    table = f"public.{cdc.slot_name}"
    decode = Decoder(database_url)
    with running(cdc, database_url, kafka_bootstrap):
        read_topic(kafka_bootstrap, _topic(cdc), minimum=3)
    assert offsets_row(database_url, cdc.connector_name)["snapshot_state"] == "done"
    execute(database_url, f"INSERT INTO {table} VALUES (7, 'while-stopped', 0)")
    with running(cdc, database_url, kafka_bootstrap):
        execute(database_url, f"INSERT INTO {table} VALUES (8, 'after-restart', 0)")
        records = read_topic(kafka_bootstrap, _topic(cdc), minimum=5, settle=2.0)
    values = [decode(r.value()) for r in records]
    assert [v["op"] for v in values] == ["r", "r", "r", "c", "c"]
    assert [v["after"]["id"] for v in values[3:]] == [7, 8]


def test_added_column_gets_a_new_schema_and_old_records_still_decode(cdc, database_url,
                                                                      kafka_bootstrap):
    table = f"public.{cdc.slot_name}"
    decode = Decoder(database_url)
    with running(cdc, database_url, kafka_bootstrap):
        read_topic(kafka_bootstrap, _topic(cdc), minimum=3)
        execute(database_url, f"INSERT INTO {table} VALUES (20, 'before-alter', 1)")
        execute(database_url, f"ALTER TABLE {table} ADD COLUMN unit text")
        execute(database_url, f"INSERT INTO {table} VALUES (21, 'after-alter', 2, 'mg')")
        records = read_topic(kafka_bootstrap, _topic(cdc), minimum=5)
    old, new = records[3], records[4]
    assert decode.value_schema_id(old.value()) != decode.value_schema_id(new.value())
    assert "unit" not in decode(old.value())["after"]
    assert decode(new.value())["after"]["unit"] == "mg"
    assert decode(records[0].value())["after"]["name"] == "one"


def test_status_while_running_shows_an_active_slot(cdc, database_url, kafka_bootstrap):
    from base.db import connect
    from connectors.source.status import connector_status

    with running(cdc, database_url, kafka_bootstrap):
        read_topic(kafka_bootstrap, _topic(cdc), minimum=3)
        execute(database_url, f"INSERT INTO public.{cdc.slot_name} VALUES (30, 'x', 1)")
        read_topic(kafka_bootstrap, _topic(cdc), minimum=4)

        def acked():
            with connect(database_url) as conn:
                status = connector_status(conn, cdc)
            return status if status.last_acked_commit_at else None

        status = wait_for(acked, 15, "the offsets row to record an acknowledged commit")
    assert status.slot_active and status.snapshot_state == "done"
    assert status.lag_bytes is not None and status.lag_bytes >= 0
    assert status.lag_seconds is not None and status.lag_seconds < 60


def test_user_defined_types_are_resolved_from_the_catalogue(unique_name, database_url,
                                                            kafka_bootstrap):
    settings = cdc_settings(unique_name)
    table = f"public.{unique_name}"
    execute(database_url,
            f"CREATE TYPE {unique_name}_state AS ENUM ('queued', 'running', 'done')",
            f"CREATE DOMAIN {unique_name}_amount AS numeric(8,2) CHECK (VALUE >= 0)",
            f"CREATE TABLE {table} (id int PRIMARY KEY, state {unique_name}_state NOT NULL, "
            f"amount {unique_name}_amount, history {unique_name}_state[], tags int[])")
    decode = Decoder(database_url)
    try:
        with running(settings, database_url, kafka_bootstrap):
            wait_for(lambda: (row := offsets_row(database_url, unique_name))
                     and row["snapshot_state"] == "done", 20, "the snapshot")
            execute(database_url, f"INSERT INTO {table} VALUES (1, 'running', 12.5, "
                    "'{queued,running}', '{1,2,3}')")
            (record,) = read_topic(kafka_bootstrap, f"{unique_name}.{table}", minimum=1)
        after = decode(record.value())["after"]
        assert after["state"] == "running"
        assert str(after["amount"]) == "12.50"
        assert after["history"] == ["queued", "running"]
        assert after["tags"] == [1, 2, 3]
        schema = decode.avro.registry.get_schema(decode.value_schema_id(record.value()))
        assert '"allowed": "queued,running,done"' in schema.replace('":"', '": "')
    finally:
        cleanup(settings, database_url)
        execute(database_url, f"DROP TYPE IF EXISTS {unique_name}_state",
                f"DROP DOMAIN IF EXISTS {unique_name}_amount")
