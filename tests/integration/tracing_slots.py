"""Read logical decoding messages from a temporary test_decoding slot (tracing tests)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

# test_decoding prints: "message: transactional: 1 prefix: traceparent, sz: 55 content:00-..."
MESSAGE_LINE = re.compile(r"^message: transactional: (\d) prefix: ([^,]+), sz: \d+ content:(.*)$")


class SlotReader:
    def __init__(self, connection: psycopg.Connection, slot: str) -> None:
        self._connection = connection
        self.slot = slot

    def changes(self) -> list[str]:
        rows = self._connection.execute(
            "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL)", (self.slot,)
        ).fetchall()
        return [row[0] for row in rows]

    def messages(self) -> list[tuple[bool, str, str]]:
        """(transactional, prefix, content) of every logical message since the last call."""
        found = []
        for line in self.changes():
            match = MESSAGE_LINE.match(line)
            if match:
                found.append((match.group(1) == "1", match.group(2), match.group(3)))
        return found


@contextmanager
def temporary_slot(database_url: str, slot: str) -> Iterator[SlotReader]:
    """A temporary slot on its own session, dropped on exit (and by PostgreSQL on close)."""
    connection = psycopg.connect(database_url, autocommit=True)
    try:
        connection.execute(
            "SELECT pg_create_logical_replication_slot(%s, 'test_decoding', true)", (slot,)
        )
        yield SlotReader(connection, slot)
    finally:
        connection.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        )
        connection.close()
