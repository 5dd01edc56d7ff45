"""The stack's PostgreSQL is ready for CDC: logical WAL, a lab role that may replicate."""

from __future__ import annotations

import psycopg
import psycopg2
import psycopg2.extras
import pytest

pytestmark = pytest.mark.integration


def test_wal_level_is_logical_and_limits_are_raised(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (["wal_level", "max_replication_slots", "max_wal_senders", "max_connections",
                  "synchronous_commit", "listen_addresses"],),
            ).fetchall()
        )
    assert settings["wal_level"] == "logical"
    assert int(settings["max_replication_slots"]) >= 20
    assert int(settings["max_wal_senders"]) >= 20
    assert int(settings["max_connections"]) >= 200
    assert settings["synchronous_commit"] == "on"
    assert settings["listen_addresses"] == "127.0.0.1"


def test_lab_role_creates_and_drops_a_pgoutput_slot(database_url: str, unique_name: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        user, replication = conn.execute(
            "SELECT current_user, rolreplication FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or ("", False)
        conn.execute(
            "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (unique_name,)
        )
        try:
            row = conn.execute(
                "SELECT plugin, slot_type FROM pg_replication_slots WHERE slot_name = %s",
                (unique_name,),
            ).fetchone()
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (unique_name,))
        left = conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (unique_name,)
        ).fetchone()
    assert (user, replication) == ("lab", True)
    assert row == ("pgoutput", "logical")
    assert left == (0,)


def test_replication_protocol_connection_is_allowed(database_url: str, unique_name: str) -> None:
    """What the CDC connector does: a walsender connection (psycopg2) that makes a slot."""
    conn = psycopg2.connect(
        database_url, connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    try:
        cursor = conn.cursor()
        cursor.create_replication_slot(unique_name, output_plugin="pgoutput")
        cursor.execute("IDENTIFY_SYSTEM")
        system = cursor.fetchone()
        cursor.drop_replication_slot(unique_name)
    finally:
        conn.close()
    assert system is not None and system[3] == "lab"  # dbname of a logical walsender
