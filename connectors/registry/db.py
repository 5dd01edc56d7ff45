"""A schema registry in the lab database: table `labstream.schema_registry` (migration 0002).

No extra service to run. Ids are the table's serial ids, versions count up per subject.
Registration is safe from many processes at once: a transaction-scoped advisory lock
per subject serialises version numbering, and `unique (subject, fingerprint)` makes
re-registration of the same schema return the existing id. Lookups are cached in
process, so the hot path never queries the database for a schema it has seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg

from base.db import connect, resolve_url
from base.errors import ServiceUnavailable
from connectors.exceptions import RegistryUnavailable, UnknownSchemaId
from connectors.registry.base import RegisteredSchema, schema_fingerprint

T = TypeVar("T")

_REGISTER_SQL = """
SELECT pg_advisory_xact_lock(hashtextextended('labstream.schema_registry:' || %(subject)s, 0));
"""
_EXISTING_SQL = """
SELECT id FROM labstream.schema_registry
 WHERE subject = %(subject)s AND fingerprint = %(fingerprint)s
"""
_INSERT_SQL = """
INSERT INTO labstream.schema_registry (subject, version, schema, fingerprint)
VALUES (
    %(subject)s,
    (SELECT coalesce(max(version), 0) + 1
       FROM labstream.schema_registry WHERE subject = %(subject)s),
    %(schema)s,
    %(fingerprint)s
)
RETURNING id
"""


class DbSchemaRegistry:
    """`SchemaRegistry` on `labstream.schema_registry` in the lab database."""

    def __init__(self, database_url: str | None = None) -> None:
        self.database_url = resolve_url(database_url)
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.database_url, application_name="labstream-registry")
            except ServiceUnavailable as exc:
                raise RegistryUnavailable(exc.message, hint=exc.hint) from exc
        return self._conn

    def _run(self, action: Callable[[psycopg.Connection], T]) -> T:
        """Run `action(conn)` in one transaction; reconnect once on a dropped connection."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                with conn.transaction():
                    return action(conn)
            except psycopg.OperationalError as exc:
                self.close()
                if attempt == 2:
                    raise RegistryUnavailable(
                        f"schema registry table query failed: {exc}",
                        hint="check the lab database is up (`labstream stack status`)",
                    ) from exc
            except psycopg.errors.UndefinedTable as exc:
                raise RegistryUnavailable(
                    "table labstream.schema_registry does not exist",
                    hint="run `labstream db migrate`",
                ) from exc
        raise AssertionError("unreachable")

    def register(self, subject: str, schema_str: str) -> int:
        fingerprint = schema_fingerprint(schema_str)
        with self._lock:
            cached = self._ids.get((subject, fingerprint))
            if cached is not None:
                return cached

            def register_in(conn: psycopg.Connection) -> int:
                params = {"subject": subject, "fingerprint": fingerprint, "schema": schema_str}
                conn.execute(_REGISTER_SQL, params)
                row = conn.execute(_EXISTING_SQL, params).fetchone()
                if row is None:
                    row = conn.execute(_INSERT_SQL, params).fetchone()
                assert row is not None
                return int(row[0])

            schema_id = self._run(register_in)
            self._ids[(subject, fingerprint)] = schema_id
            self._schemas[schema_id] = schema_str
            return schema_id

    def get_schema(self, schema_id: int) -> str:
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            row = self._run(
                lambda conn: conn.execute(
                    "SELECT schema FROM labstream.schema_registry WHERE id = %s", (schema_id,)
                ).fetchone()
            )
            if row is None:
                raise UnknownSchemaId(
                    f"schema id {schema_id} is not in labstream.schema_registry",
                    hint="the record was written against another registry; "
                    "check SCHEMA_REGISTRY_URL / LABSTREAM_DATABASE_URL",
                )
            self._schemas[schema_id] = row[0]
            return str(row[0])

    def latest(self, subject: str) -> RegisteredSchema | None:
        with self._lock:
            row = self._run(
                lambda conn: conn.execute(
                    "SELECT version, id, schema FROM labstream.schema_registry "
                    "WHERE subject = %s ORDER BY version DESC LIMIT 1",
                    (subject,),
                ).fetchone()
            )
        if row is None:
            return None
        return RegisteredSchema(subject, int(row[0]), int(row[1]), str(row[2]))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
