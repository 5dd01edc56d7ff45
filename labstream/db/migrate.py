"""Apply `migrations/NNNN_name.sql` in order, once each, safely from many processes.

Each file runs in its own transaction together with the row that records it in
`labstream.schema_migrations`, so a failed migration leaves no trace and is
retried next time. A session-level advisory lock serialises concurrent runners
(several services start at once in docker compose). A recorded migration whose
file changed afterwards stops the run: the database no longer matches the file,
and silently skipping it would hide that.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

from base.db import connect
from labstream.db.exceptions import ChecksumMismatch, MigrationError, MigrationFileError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# pg_advisory_lock(classid, objid): classid is "labs" in ASCII, objid hashes the
# tracking schema, so tests that track in their own schema don't wait on the real one.
ADVISORY_LOCK_CLASS = 0x6C616273
DEFAULT_TRACKING_SCHEMA = "labstream"

BOOTSTRAP_SQL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer     NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class AppliedMigration:
    """One row of `labstream.schema_migrations`."""

    version: int
    name: str
    checksum: str
    applied_at: datetime | None = None


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[AppliedMigration]
    pending: list[Migration]
    # applied in the database but no file here (a newer checkout ran them)
    unknown: list[AppliedMigration]
    # applied, but the file was edited since: `migrate` will refuse to run
    changed: list[Migration]

    def to_dict(self) -> dict[str, object]:
        return {
            "applied": [
                {
                    "version": row.version,
                    "name": row.name,
                    "checksum": row.checksum,
                    "applied_at": row.applied_at.isoformat() if row.applied_at else None,
                }
                for row in self.applied
            ],
            "pending": [
                {"version": m.version, "name": m.name, "file": m.filename} for m in self.pending
            ],
            "unknown": [{"version": row.version, "name": row.name} for row in self.unknown],
            "changed": [
                {"version": m.version, "name": m.name, "file": m.filename} for m in self.changed
            ],
        }


def file_checksum(content: bytes) -> str:
    """sha256 of the file with line endings normalised (a CRLF checkout is not an edit)."""
    return hashlib.sha256(content.replace(b"\r\n", b"\n")).hexdigest()


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in `folder`, sorted by version; rejects bad names and duplicates."""
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise MigrationFileError(
                f"migration file {path} is not named NNNN_name.sql",
                hint="rename it to a 4-digit version, an underscore and a lowercase name, "
                "e.g. 0007_add_plates.sql",
            )
        version = int(match["version"])
        if version in found:
            raise MigrationFileError(
                f"migration version {version:04d} is used twice: "
                f"{found[version].filename} and {path.name}",
                hint="give one of them the next free number",
            )
        found[version] = Migration(version, match["name"], path, file_checksum(path.read_bytes()))
    return [found[v] for v in sorted(found)]


def changed_since_applied(
    available: Sequence[Migration], applied: Iterable[AppliedMigration]
) -> list[tuple[Migration, AppliedMigration]]:
    """Pairs of (file, recorded row) whose checksums differ."""
    by_version = {m.version: m for m in available}
    return [
        (by_version[row.version], row)
        for row in applied
        if row.version in by_version and by_version[row.version].checksum != row.checksum
    ]


def check_applied(available: Sequence[Migration], applied: Iterable[AppliedMigration]) -> None:
    """Raise `ChecksumMismatch` if a recorded migration's file changed since it ran."""
    for local, row in changed_since_applied(available, applied):
        raise ChecksumMismatch(
            f"migration {local.filename} was changed after it was applied "
            f"(recorded checksum {row.checksum[:12]}, file now {local.checksum[:12]})",
            hint=f"restore {local.path} to its applied content and put the change in a "
            "new migration file with the next number",
        )


def plan(available: Sequence[Migration], applied: Iterable[AppliedMigration]) -> list[Migration]:
    """The migrations still to apply, in order; checks recorded checksums first."""
    applied_rows = list(applied)
    check_applied(available, applied_rows)
    done = {row.version for row in applied_rows}
    return [m for m in available if m.version not in done]


def status_of(
    available: Sequence[Migration], applied: Sequence[AppliedMigration]
) -> MigrationStatus:
    """Pure: which are applied, pending, or recorded without a local file."""
    local_versions = {m.version for m in available}
    done = {row.version for row in applied}
    return MigrationStatus(
        applied=list(applied),
        pending=[m for m in available if m.version not in done],
        unknown=[row for row in applied if row.version not in local_versions],
        changed=[local for local, _ in changed_since_applied(available, applied)],
    )


def _tracking_table(schema: str) -> sql.Composed:
    return sql.SQL("{}.schema_migrations").format(sql.Identifier(schema))


def _read_applied(conn: psycopg.Connection, schema: str) -> list[AppliedMigration]:
    exists = conn.execute(
        "SELECT to_regclass(format('%%I.schema_migrations', %s::text))", (schema,)
    ).fetchone()
    if exists is None or exists[0] is None:
        return []
    rows = conn.execute(
        sql.SQL("SELECT version, name, checksum, applied_at FROM {} ORDER BY version").format(
            _tracking_table(schema)
        )
    ).fetchall()
    return [AppliedMigration(*row) for row in rows]


def _apply(conn: psycopg.Connection, migration: Migration, schema: str) -> None:
    try:
        with conn.transaction():
            # no parameters: psycopg sends the file as one multi-statement query
            conn.execute(migration.sql())
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (version, name, checksum, duration_ms) VALUES"
                    " (%s, %s, %s, (extract(epoch FROM clock_timestamp() - now()) * 1000)::int)"
                ).format(_tracking_table(schema)),
                (migration.version, migration.name, migration.checksum),
            )
    except psycopg.Error as exc:
        raise MigrationError(
            f"migration {migration.filename} failed and was rolled back: {exc}".strip(),
            hint=f"fix the SQL in {migration.path} and run `labstream db migrate` again",
        ) from exc


def migrate(
    database_url: str | None = None,
    *,
    folder: Path = MIGRATIONS_DIR,
    tracking_schema: str = DEFAULT_TRACKING_SCHEMA,
) -> list[str]:
    """Apply pending migrations; returns the file names applied (empty: up to date).

    `tracking_schema` holds `schema_migrations` (tests use their own).
    """
    available = discover(folder)
    lock = (ADVISORY_LOCK_CLASS, tracking_schema)
    with connect(database_url, autocommit=True, application_name="labstream-migrate") as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", lock)
        try:
            conn.execute(sql.SQL(BOOTSTRAP_SQL).format(schema=sql.Identifier(tracking_schema)))
            pending = plan(available, _read_applied(conn, tracking_schema))
            for migration in pending:
                _apply(conn, migration, tracking_schema)
            return [m.filename for m in pending]
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", lock)


def migration_status(
    database_url: str | None = None,
    *,
    folder: Path = MIGRATIONS_DIR,
    tracking_schema: str = DEFAULT_TRACKING_SCHEMA,
) -> MigrationStatus:
    """Applied and pending migrations, without changing anything."""
    available = discover(folder)
    with connect(database_url, autocommit=True, application_name="labstream-migrate") as conn:
        applied = _read_applied(conn, tracking_schema)
    return status_of(available, applied)
