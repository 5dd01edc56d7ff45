"""The migration runner and the lab schema against the real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from labstream.db.exceptions import ChecksumMismatch, MigrationError
from labstream.db.migrate import MIGRATIONS_DIR, migrate, migration_status

pytestmark = pytest.mark.integration

LAB_TABLES = (
    "tenants",
    "experiments",
    "instruments",
    "runs",
    "samples",
    "inventory_items",
    "sensor_readings",
    "trigger_rules",
    "jobs",
    "job_log_lines",
)
FULL_IDENTITY = {"experiments", "runs", "instruments", "inventory_items", "trigger_rules", "jobs"}


@pytest.fixture
def scratch_schema(database_url: str, unique_name: str) -> Iterator[str]:
    """A schema of this test's own, dropped afterwards."""
    yield unique_name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(unique_name))
        )


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_runner_applies_in_order_once_then_reports_up_to_date(
    database_url: str, scratch_schema: str, tmp_path: Path
) -> None:
    write(tmp_path, "0002_add_column.sql", f"ALTER TABLE {scratch_schema}.things ADD COLUMN n int;")
    write(
        tmp_path, "0001_create.sql", f"CREATE TABLE {scratch_schema}.things (id int PRIMARY KEY);"
    )
    first = migrate(database_url, folder=tmp_path, tracking_schema=scratch_schema)
    second = migrate(database_url, folder=tmp_path, tracking_schema=scratch_schema)
    assert first == ["0001_create.sql", "0002_add_column.sql"]
    assert second == []
    status = migration_status(database_url, folder=tmp_path, tracking_schema=scratch_schema)
    assert [row.version for row in status.applied] == [1, 2] and status.pending == []
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT version, name, length(checksum), applied_at IS NOT NULL"
                " FROM {}.schema_migrations ORDER BY version"
            ).format(sql.Identifier(scratch_schema))
        ).fetchall()
    assert rows == [(1, "create", 64, True), (2, "add_column", 64, True)]


def test_concurrent_runners_apply_each_migration_once(
    database_url: str, scratch_schema: str, tmp_path: Path
) -> None:
    # no IF NOT EXISTS: a second application would fail
    write(
        tmp_path,
        "0001_slow.sql",
        f"SELECT pg_sleep(0.3); CREATE TABLE {scratch_schema}.once (id int PRIMARY KEY);",
    )
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(database_url, folder=tmp_path, tracking_schema=scratch_schema))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(results) == [[], [], [], ["0001_slow.sql"]]


def test_failed_migration_rolls_back_and_names_the_file(
    database_url: str, scratch_schema: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_ok.sql", f"CREATE TABLE {scratch_schema}.ok (id int PRIMARY KEY);")
    write(tmp_path, "0002_broken.sql", f"CREATE TABLE {scratch_schema}.half (id int); SELEKT 1;")
    with pytest.raises(MigrationError, match=re.escape("0002_broken.sql")) as err:
        migrate(database_url, folder=tmp_path, tracking_schema=scratch_schema)
    assert err.value.hint is not None and "0002_broken.sql" in err.value.hint
    with psycopg.connect(database_url) as conn:
        half = conn.execute("SELECT to_regclass(%s)", (f"{scratch_schema}.half",)).fetchone()
        ok = conn.execute("SELECT to_regclass(%s)", (f"{scratch_schema}.ok",)).fetchone()
    assert half == (None,) and ok is not None and ok[0] is not None
    status = migration_status(database_url, folder=tmp_path, tracking_schema=scratch_schema)
    assert [m.filename for m in status.pending] == ["0002_broken.sql"]


def test_edited_applied_migration_stops_the_run(
    database_url: str, scratch_schema: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_create.sql", f"CREATE TABLE {scratch_schema}.t (id int PRIMARY KEY);")
    migrate(database_url, folder=tmp_path, tracking_schema=scratch_schema)
    write(tmp_path, "0001_create.sql", f"CREATE TABLE {scratch_schema}.t (id bigint PRIMARY KEY);")
    write(tmp_path, "0002_next.sql", f"CREATE TABLE {scratch_schema}.next (id int PRIMARY KEY);")
    with pytest.raises(ChecksumMismatch, match=re.escape("0001_create.sql")):
        migrate(database_url, folder=tmp_path, tracking_schema=scratch_schema)
    status = migration_status(database_url, folder=tmp_path, tracking_schema=scratch_schema)
    assert [m.filename for m in status.changed] == ["0001_create.sql"]
    assert [m.filename for m in status.pending] == ["0002_next.sql"]  # nothing applied


def test_real_migrations_are_idempotent_and_declare_keys_and_identities(database_url: str) -> None:
    migrate(database_url)
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relreplident,"
            " EXISTS (SELECT FROM pg_constraint p WHERE p.conrelid = c.oid AND p.contype = 'p')"
            " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
            " AND c.relname = ANY(%s)",
            (list(LAB_TABLES),),
        ).fetchall()
        recorded = conn.execute(
            "SELECT name FROM labstream.schema_migrations WHERE version = 1"
        ).fetchone()
    found = {name: (identity, has_pk) for name, identity, has_pk in rows}
    assert set(found) == set(LAB_TABLES)
    assert all(has_pk for _, has_pk in found.values())
    assert {name for name, (identity, _) in found.items() if identity == "f"} == FULL_IDENTITY
    assert recorded == ("lab_schema",)


def test_lab_schema_sql_runs_twice_in_a_fresh_schema(
    database_url: str, scratch_schema: str
) -> None:
    text = (MIGRATIONS_DIR / "0001_lab_schema.sql").read_text()
    assert "public." in text
    relocated = text.replace("public.", f"{scratch_schema}.")
    with psycopg.connect(database_url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch_schema)))
        conn.execute(relocated)
        conn.execute(relocated)
        conn.execute(
            sql.SQL("INSERT INTO {}.tenants (id, name) VALUES ('t1', 'T')").format(
                sql.Identifier(scratch_schema)
            )
        )
        conn.execute(
            sql.SQL(
                "UPDATE {}.tenants SET name = 'T2' WHERE id = 't1'"
                " RETURNING updated_at > created_at"
            ).format(sql.Identifier(scratch_schema))
        )
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (scratch_schema,)
        ).fetchone()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.experiments (id, tenant_id, kind, submitted_by)"
                    " VALUES ('exp-1', 't1', 'centrifuge', 'x')"
                ).format(sql.Identifier(scratch_schema))
            )
    assert tables == (len(LAB_TABLES),)


def test_db_commands_report_up_to_date_and_json_status(database_url: str) -> None:
    labstream = Path(sys.executable).with_name("labstream")
    env = {**os.environ, "LABSTREAM_DATABASE_URL": database_url}
    migrated = subprocess.run(
        [str(labstream), "db", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    status = subprocess.run(
        [str(labstream), "db", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("up to date (postgresql://")
    assert ":***@" in migrated.stdout or "@" not in database_url
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["pending"] == [] and document["changed"] == []
    assert {"version": 1, "name": "lab_schema"}.items() <= document["applied"][0].items()


def test_unreachable_database_fails_with_exit_code_3_and_the_fix() -> None:
    labstream = Path(sys.executable).with_name("labstream")
    env = {**os.environ, "LABSTREAM_DATABASE_URL": "postgresql://lab:topsecret@127.0.0.1:9/lab"}
    done = subprocess.run(
        [str(labstream), "db", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert "postgresql://lab:***@127.0.0.1:9/lab" in done.stderr
    assert "topsecret" not in done.stderr + done.stdout
    assert "fix: start the local stack with `labstream stack up`" in done.stderr
