"""Pure parts of the migration runner: discovery, ordering, checksums, status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from base.db import mask_url
from labstream.db.exceptions import ChecksumMismatch, MigrationFileError
from labstream.db.migrate import (
    MIGRATIONS_DIR,
    AppliedMigration,
    discover,
    file_checksum,
    plan,
    status_of,
)


def write(folder: Path, name: str, sql: str = "SELECT 1;") -> Path:
    path = folder / name
    path.write_text(sql, encoding="utf-8")
    return path


def applied_row(folder: Path, name: str) -> AppliedMigration:
    migration = next(m for m in discover(folder) if m.filename == name)
    return AppliedMigration(migration.version, migration.name, migration.checksum)


def test_discover_orders_by_version_not_by_listing(tmp_path: Path) -> None:
    write(tmp_path, "0010_later.sql")
    write(tmp_path, "0002_second.sql")
    write(tmp_path, "0001_first.sql")
    assert [m.filename for m in discover(tmp_path)] == [
        "0001_first.sql",
        "0002_second.sql",
        "0010_later.sql",
    ]
    assert [m.version for m in discover(tmp_path)] == [1, 2, 10]


def test_discover_rejects_badly_named_file(tmp_path: Path) -> None:
    write(tmp_path, "1_oops.sql")
    with pytest.raises(MigrationFileError, match=re.escape("1_oops.sql")) as err:
        discover(tmp_path)
    assert err.value.hint is not None and "0007_add_plates.sql" in err.value.hint


def test_discover_rejects_duplicate_version(tmp_path: Path) -> None:
    write(tmp_path, "0003_connector_offsets.sql")
    write(tmp_path, "0003_spans.sql")
    with pytest.raises(
        MigrationFileError, match=re.escape("0003_connector_offsets.sql and 0003_spans.sql")
    ):
        discover(tmp_path)


def test_checksum_ignores_line_endings_but_not_content() -> None:
    assert file_checksum(b"SELECT 1;\r\nSELECT 2;\r\n") == file_checksum(b"SELECT 1;\nSELECT 2;\n")
    assert file_checksum(b"SELECT 1;\n") != file_checksum(b"SELECT 2;\n")


def test_plan_returns_only_unapplied_in_order(tmp_path: Path) -> None:
    for name in ("0001_a.sql", "0002_b.sql", "0003_c.sql"):
        write(tmp_path, name, f"-- {name}\n")
    applied = [applied_row(tmp_path, "0002_b.sql")]
    assert [m.filename for m in plan(discover(tmp_path), applied)] == ["0001_a.sql", "0003_c.sql"]
    everything = [applied_row(tmp_path, n) for n in ("0001_a.sql", "0002_b.sql", "0003_c.sql")]
    assert plan(discover(tmp_path), everything) == []


def test_edited_applied_migration_is_refused_with_file_and_fix(tmp_path: Path) -> None:
    write(tmp_path, "0001_lab.sql", "CREATE TABLE t (id int);")
    recorded = applied_row(tmp_path, "0001_lab.sql")
    write(tmp_path, "0001_lab.sql", "CREATE TABLE t (id bigint);")
    with pytest.raises(ChecksumMismatch, match=re.escape("0001_lab.sql was changed")) as err:
        plan(discover(tmp_path), [recorded])
    assert err.value.hint is not None and "new migration" in err.value.hint


def test_status_reports_pending_unknown_and_changed_without_raising(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql")
    write(tmp_path, "0002_b.sql")
    recorded_a = applied_row(tmp_path, "0001_a.sql")
    write(tmp_path, "0001_a.sql", "SELECT 'edited';")
    from_newer_checkout = AppliedMigration(9, "future", "abc")
    status = status_of(discover(tmp_path), [recorded_a, from_newer_checkout])
    assert [m.filename for m in status.pending] == ["0002_b.sql"]
    assert [row.version for row in status.unknown] == [9]
    assert [m.filename for m in status.changed] == ["0001_a.sql"]
    as_dict = status.to_dict()
    assert as_dict["pending"] == [{"version": 2, "name": "b", "file": "0002_b.sql"}]


def test_shipped_migrations_are_well_formed() -> None:
    shipped = discover(MIGRATIONS_DIR)
    assert shipped[0].filename == "0001_lab_schema.sql"
    versions = [m.version for m in shipped]
    assert versions == sorted(set(versions))


def test_lab_schema_declares_full_replica_identity_where_before_images_matter() -> None:
    sql = (MIGRATIONS_DIR / "0001_lab_schema.sql").read_text()
    for table in ("experiments", "runs", "instruments", "inventory_items", "trigger_rules", "jobs"):
        assert f"ALTER TABLE public.{table}" in sql
        line = next(ln for ln in sql.splitlines() if ln.startswith(f"ALTER TABLE public.{table} "))
        assert line.rstrip().endswith("REPLICA IDENTITY FULL;")
    assert "BEGIN;" not in sql and "COMMIT;" not in sql  # the runner owns the transaction


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://lab:s3cret@127.0.0.1:55432/lab", "postgresql://lab:***@127.0.0.1:55432/lab"),
        ("postgresql://lab@db:5432/lab", "postgresql://lab@db:5432/lab"),
        (
            "postgresql://u:p%40ss@[::1]:5432/lab?sslmode=require",
            "postgresql://u:***@[::1]:5432/lab?sslmode=require",
        ),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked
