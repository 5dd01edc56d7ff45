"""A schema registry in the lab database: table `labstream.schema_registry` (migration 0002).

No extra service to run. Versions count up per subject. Registration is safe from
many processes at once: a transaction-scoped advisory lock per subject serialises
version numbering and the compatibility check, and `unique (subject, fingerprint)`
makes re-registration of the same schema return the existing id. A new version must
pass the subject's compatibility level (`labstream.schema_registry_config`, migration
0011; BACKWARD when unset, as Confluent's registry), so the connector stops on a
breaking table change instead of writing records that consumers cannot read.

Ids: new ids start at `id_offset` (LABSTREAM_SCHEMA_REGISTRY_ID_OFFSET, default
1,000,000,000): a consumer pointed at another registry (whose ids count from 1) gets
"schema not found" instead of silently decoding with somebody else's schema.
Lookups by id are cached in process, so the hot path never queries the database for
a schema it has seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from base.db import connect, resolve_url
from base.errors import ServiceUnavailable
from connectors.exceptions import IncompatibleSchema, RegistryUnavailable, UnknownSchemaId
from connectors.registry import compat
from connectors.registry.base import RegisteredSchema, schema_fingerprint
from connectors.registry.guard import refuse_lab_registration
from connectors.registry.settings import RegistrySettings

T = TypeVar("T")

MAX_ID = 2**31 - 1  # Java clients read the framing's id as a signed int

_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(hashtextextended('labstream.schema_registry:' || %s, 0))"
)
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
_OFFSET_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(hashtextextended('labstream.schema_registry.id_offset', 0))"
)
# setval(.., false): the next nextval() returns exactly the offset
_OFFSET_SQL = """
SELECT setval(seq, %(offset)s, false)
  FROM (SELECT pg_get_serial_sequence('labstream.schema_registry', 'id')::regclass AS seq) s
 WHERE coalesce(pg_sequence_last_value(seq), 0) < %(offset)s
"""
_LEVEL_SQL = """
SELECT compatibility FROM labstream.schema_registry_config
 WHERE subject IN (%s, '') ORDER BY subject DESC LIMIT 1
"""


def check_id_offset(offset: int) -> int:
    if not 1 <= offset < MAX_ID - 1_000_000:
        raise ValueError(
            f"LABSTREAM_SCHEMA_REGISTRY_ID_OFFSET={offset} is out of range: "
            f"use 1 .. {MAX_ID - 1_000_000} (ids are 32-bit signed in the record framing)"
        )
    return offset


class DbSchemaRegistry:
    """`SchemaRegistry` on `labstream.schema_registry` in the lab database."""

    def __init__(self, database_url: str | None = None, *, id_offset: int | None = None) -> None:
        self.database_url = resolve_url(database_url)
        self.id_offset = check_id_offset(
            RegistrySettings().schema_registry_id_offset if id_offset is None else id_offset)
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}
        self._lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        self._offset_applied = False

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.database_url, application_name="labstream-registry")
            except ServiceUnavailable as exc:
                raise RegistryUnavailable(exc.message, hint=exc.hint) from exc
        return self._conn

    def _run(self, action: Callable[[psycopg.Connection], T]) -> T:
        """Run `action(conn)` in one transaction; reconnect once on a dropped connection."""
        with self._lock:
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
                        f"a schema registry table does not exist: {exc.diag.message_primary}",
                        hint="run `labstream db migrate`",
                    ) from exc
        raise AssertionError("unreachable")

    def _rows(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(sql, params).fetchall())

    # -- the SchemaRegistry protocol (the connector's path) -------------------------

    def register(self, subject: str, schema_str: str) -> int:
        """The id of `schema_str` under `subject`; a new version must pass the subject's
        compatibility level (`IncompatibleSchema`) and be valid Avro (`InvalidSchema`)."""
        return self.register_version(subject, schema_str).schema_id

    def register_version(self, subject: str, schema_str: str) -> RegisteredSchema:
        fingerprint = schema_fingerprint(schema_str)
        with self._lock:
            cached = self._ids.get((subject, fingerprint))
            if cached is not None:
                return RegisteredSchema(subject, 0, cached, self._schemas[cached])
            compat.parse(schema_str)
            registered = self._run(lambda conn: self._register_in(conn, subject, schema_str))
            self._ids[(subject, fingerprint)] = registered.schema_id
            self._schemas[registered.schema_id] = schema_str
            return registered

    def _register_in(self, conn: psycopg.Connection, subject: str, text: str) -> RegisteredSchema:
        params = {"subject": subject, "fingerprint": schema_fingerprint(text), "schema": text}
        conn.execute(_LOCK_SQL, (subject,))
        row = conn.execute(_EXISTING_SQL, params).fetchone()
        if row is None:
            level = self._level_in(conn, subject)
            earlier = [r[0] for r in conn.execute(
                "SELECT schema FROM labstream.schema_registry WHERE subject = %s "
                "ORDER BY version", (subject,))]
            if not earlier:
                refuse_lab_registration(conn, subject)  # registered elsewhere: ids would mix
            problems = compat.incompatibilities(level, text, earlier)
            if problems:
                raise IncompatibleSchema(
                    f"schema for subject {subject!r} is incompatible with an earlier version "
                    f"under compatibility level {level}: {'; '.join(problems)}",
                    messages=problems,
                    hint="make the change compatible (new fields need a default), or set the "
                    f"subject's level: PUT /config/{subject} on `labstream registry serve` "
                    "(without --read-only)",
                )
            self._apply_offset(conn)
            row = conn.execute(_INSERT_SQL, params).fetchone()
        assert row is not None
        found = self.by_id_in(conn, int(row[0]))
        return found[0]

    def _apply_offset(self, conn: psycopg.Connection) -> None:
        if not self._offset_applied:
            conn.execute(_OFFSET_LOCK_SQL)
            conn.execute(_OFFSET_SQL, {"offset": self.id_offset})
            self._offset_applied = True

    def get_schema(self, schema_id: int) -> str:
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        found = self._run(lambda conn: self.by_id_in(conn, schema_id))
        if not found:
            raise UnknownSchemaId(
                f"schema id {schema_id} is not in labstream.schema_registry",
                hint="the record was written against another registry; "
                "check SCHEMA_REGISTRY_URL / LABSTREAM_DATABASE_URL",
            )
        self._schemas[schema_id] = found[0].schema
        return found[0].schema

    def latest(self, subject: str) -> RegisteredSchema | None:
        return self.version(subject, None)

    # -- reads for the REST server ----------------------------------------------------

    @staticmethod
    def by_id_in(conn: psycopg.Connection, schema_id: int) -> list[RegisteredSchema]:
        rows = conn.execute(
            "SELECT subject, version, id, schema FROM labstream.schema_registry WHERE id = %s",
            (schema_id,),
        ).fetchall()
        return [RegisteredSchema(str(r[0]), int(r[1]), int(r[2]), str(r[3])) for r in rows]

    def by_id(self, schema_id: int) -> list[RegisteredSchema]:
        """Every (subject, version) row with this id: one row, or none."""
        return self._run(lambda conn: self.by_id_in(conn, schema_id))

    def subjects(self) -> list[str]:
        rows = self._rows("SELECT DISTINCT subject FROM labstream.schema_registry "
                          "ORDER BY subject", ())
        return [str(r[0]) for r in rows]

    def versions(self, subject: str) -> list[int]:
        rows = self._rows("SELECT version FROM labstream.schema_registry WHERE subject = %s "
                          "ORDER BY version", (subject,))
        return [int(r[0]) for r in rows]

    def version(self, subject: str, version: int | None) -> RegisteredSchema | None:
        """One version of a subject; `None` asks for the latest."""
        rows = self._rows(
            "SELECT version, id, schema FROM labstream.schema_registry WHERE subject = %(s)s "
            "AND (%(v)s::int IS NULL OR version = %(v)s::int) ORDER BY version DESC LIMIT 1",
            {"s": subject, "v": version},
        )
        return RegisteredSchema(subject, int(rows[0][0]), int(rows[0][1]), str(rows[0][2])) \
            if rows else None

    def lookup(self, subject: str, schema_str: str) -> RegisteredSchema | None:
        """The version of `subject` holding this schema (formatting ignored), if any."""
        rows = self._rows(
            "SELECT version, id, schema FROM labstream.schema_registry "
            "WHERE subject = %s AND fingerprint = %s",
            (subject, schema_fingerprint(schema_str)),
        )
        return RegisteredSchema(subject, int(rows[0][0]), int(rows[0][1]), str(rows[0][2])) \
            if rows else None

    # -- compatibility levels (migration 0011) -----------------------------------------

    @staticmethod
    def _level_in(conn: psycopg.Connection, subject: str) -> str:
        row = conn.execute(_LEVEL_SQL, (subject,)).fetchone()
        return str(row[0]) if row else compat.DEFAULT_LEVEL

    def level(self, subject: str | None = None, *, fallback: bool = True) -> str | None:
        """The level in force for `subject` (None: global); with `fallback=False`, only a
        level set on the subject itself (None when it has none)."""
        if subject is not None and not fallback:
            rows = self._rows("SELECT compatibility FROM labstream.schema_registry_config "
                              "WHERE subject = %s", (subject,))
            return str(rows[0][0]) if rows else None
        return self._run(lambda conn: self._level_in(conn, subject or ""))

    def set_level(self, subject: str | None, level: str) -> str:
        checked = compat.check_level(level)
        self._run(lambda conn: conn.execute(
            "INSERT INTO labstream.schema_registry_config (subject, compatibility) "
            "VALUES (%s, %s) ON CONFLICT (subject) DO UPDATE "
            "SET compatibility = excluded.compatibility, updated_at = now()",
            (subject or "", checked)))
        return checked

    def delete_level(self, subject: str | None) -> str | None:
        """Remove a level that was set; returns it (None: there was none)."""
        rows = self._rows("DELETE FROM labstream.schema_registry_config WHERE subject = %s "
                          "RETURNING compatibility", (subject or "",))
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
