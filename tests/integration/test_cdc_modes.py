"""Snapshot modes, a lost slot, and the one-line errors."""

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

from connectors.source.connector import CdcConnector
from connectors.source.exceptions import SlotLost

pytestmark = pytest.mark.integration


@pytest.fixture
def table(unique_name, database_url):
    execute(database_url,
            f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY, note text)",
            f"INSERT INTO public.{unique_name} VALUES (1, 'old'), (2, 'old')")
    return f"public.{unique_name}"


def _ops(records, decode):
    return [(decode(r.value())["op"], decode(r.value())["after"]["id"]) for r in records]


@pytest.mark.parametrize("mode, state", [("never", "skipped"), ("no_data", "done")])
def test_modes_without_data_stream_only_new_changes(mode, state, table, unique_name,
                                                    database_url, kafka_bootstrap):
    settings = cdc_settings(unique_name, snapshot_mode=mode)
    topic = f"{unique_name}.{table}"
    decode = Decoder(database_url)
    try:
        with running(settings, database_url, kafka_bootstrap):
            wait_for(lambda: (row := offsets_row(database_url, unique_name))
                     and row["snapshot_state"] == state, 20, f"snapshot_state {state}")
            execute(database_url, f"INSERT INTO {table} VALUES (3, 'new')")
            records = read_topic(kafka_bootstrap, topic, minimum=1, settle=1.5)
        assert _ops(records, decode) == [("c", 3)]
    finally:
        cleanup(settings, database_url)


def test_when_needed_snapshots_again_after_the_slot_is_dropped(table, unique_name, database_url,
                                                              kafka_bootstrap):
    settings = cdc_settings(unique_name, snapshot_mode="when_needed")
    topic = f"{unique_name}.{table}"
    decode = Decoder(database_url)
    try:
        with running(settings, database_url, kafka_bootstrap):
            read_topic(kafka_bootstrap, topic, minimum=2)
        execute(database_url, f"SELECT pg_drop_replication_slot('{unique_name}')")
        execute(database_url, f"INSERT INTO {table} VALUES (3, 'while no slot')")
        with running(settings, database_url, kafka_bootstrap):
            records = read_topic(kafka_bootstrap, topic, minimum=5)
        assert _ops(records, decode) == [("r", 1), ("r", 2), ("r", 1), ("r", 2), ("r", 3)]
    finally:
        cleanup(settings, database_url)


def test_initial_mode_stops_with_a_fix_when_its_slot_was_dropped(table, unique_name,
                                                                 database_url, kafka_bootstrap):
    settings = cdc_settings(unique_name)
    try:
        with running(settings, database_url, kafka_bootstrap):
            read_topic(kafka_bootstrap, f"{unique_name}.{table}", minimum=2)
        execute(database_url, f"SELECT pg_drop_replication_slot('{unique_name}')")
        connector = CdcConnector(settings, database_url=database_url,
                                 bootstrap_servers=kafka_bootstrap)
        with pytest.raises(SlotLost) as caught:
            connector.run()
        assert "was dropped" in caught.value.message
        assert "labstream cdc reset --yes" in (caught.value.hint or "")
    finally:
        cleanup(settings, database_url)


def test_interrupted_snapshot_row_is_resumed_by_a_hand_over(table, unique_name, database_url,
                                                            kafka_bootstrap):
    """A slot left at its creation point with no offsets row (crash right after
    CREATE_REPLICATION_SLOT) is streamed up to a new snapshot, then replaced."""
    settings = cdc_settings(unique_name)
    topic = f"{unique_name}.{table}"
    decode = Decoder(database_url)
    # publication first: PostgreSQL cannot decode changes from before it existed
    execute(database_url, f"CREATE PUBLICATION {unique_name} FOR TABLE {table}")
    execute(database_url, f"SELECT pg_create_logical_replication_slot('{unique_name}', 'pgoutput')")
    execute(database_url, f"UPDATE {table} SET note = 'v2' WHERE id = 1")
    execute(database_url, f"UPDATE {table} SET note = 'v3' WHERE id = 1")
    try:
        with running(settings, database_url, kafka_bootstrap):
            records = read_topic(kafka_bootstrap, topic, minimum=4)
            row = wait_for(lambda: (r := offsets_row(database_url, unique_name))
                           and r["snapshot_state"] == "done" and r, 20, "hand-over to finish")
        notes = [(decode(r.value())["op"], decode(r.value())["after"]["note"]) for r in records]
        # both superseded versions first (from the old slot), then the snapshot
        assert notes[:2] == [("u", "v2"), ("u", "v3")]
        assert sorted(notes[2:]) == [("r", "old"), ("r", "v3")]
        assert row["slot_name"].startswith(f"{unique_name}_h")
        assert execute(database_url, "SELECT count(*) FROM pg_replication_slots "
                       "WHERE slot_name = %s", params=(unique_name,)) == [(0,)]
    finally:
        cleanup(settings, database_url)
