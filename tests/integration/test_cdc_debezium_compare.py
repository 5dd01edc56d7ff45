"""Field for field against real Debezium 3.6.1 under DEFAULT, FULL and USING INDEX identity.

Debezium (Kafka Connect standalone, JsonConverter with schemas, stock settings) and
labstream (JSON mode) capture the same three tables while one workload runs: a
snapshot row, inserts, an update that leaves a TOASTed column untouched, a primary-key
change, a change of the replica-identity index column, a delete, a truncate, with
transaction metadata on. Every record (key and value: schema and payload; headers),
and every BEGIN/END record of the transaction topic, must be equal, except the
differences docs/events.md ("Differences from Debezium") lists, each normalised below
by name. Needs Java and Maven (the jars come from Maven Central): fails, never skips,
without them. Heavy (a JVM): marked slow.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_helpers import REPO, cdc_settings, cleanup, read_topic, running, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

sys.path.insert(0, str(REPO / "bench"))
from debezium.connect_standalone import DebeziumConnect, ensure_libs  # noqa: E402

REST_PORT = 18313  # this worktree's Connect REST port
IDENTITIES = ("def", "full", "idx")
COLUMNS = ("id bigserial PRIMARY KEY, code text NOT NULL UNIQUE, t text, j jsonb, "
           "ts timestamptz, n numeric(10,2), arr text[], b bytea, big text, flag boolean, "
           "i int, f float8, d date, u uuid, v varchar(20)")
SNAPSHOT_ROW = ("'s1', 'snap', '{\"a\": 1}', '2026-01-02 03:04:05.123456+00', 12.34, "
                "ARRAY['x','y'], '\\x0102', 'short', true, -7, 1.5, '2026-03-04', "
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'vv'")
# Debezium's per-record context headers (extended headers) are not written: docs/events.md
DEBEZIUM_ONLY_HEADERS = "__debezium.context."


def _require_jvm_tools() -> None:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: this test runs real Debezium "
                    "(apt-get install default-jdk-headless maven)", pytrace=False)


def _workload(conn: psycopg.Connection, table: str) -> None:
    conn.execute(f"INSERT INTO {table} (code, t, j, ts, n, arr, b, big, flag, i, f, d, u, v) "
                 "VALUES ('a', 'one', '{\"k\": [1, 2]}', '2026-05-06 07:08:09+02', -1.5, "
                 "ARRAY['p', NULL], '\\xdeadbeef', repeat(md5('x'), 400), false, 2147483647, "
                 "-0.25, '1999-12-31', 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '')")
    conn.execute(f"UPDATE {table} SET t = 'two' WHERE code = 'a'")  # big: TOAST untouched
    conn.execute(f"UPDATE {table} SET id = id + 100 WHERE code = 'a'")  # primary key
    conn.execute(f"UPDATE {table} SET code = 'b' WHERE code = 'a'")  # identity index column
    conn.execute(f"DELETE FROM {table} WHERE code = 'b'")
    conn.execute(f"TRUNCATE {table}")  # skipped by both (skipped.operations=t)
    conn.execute(f"INSERT INTO {table} (code) VALUES ('end')")


def _create_tables(database_url: str, name: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for ident in IDENTITIES:
            conn.execute(f"CREATE TABLE {name}_{ident} ({COLUMNS})")
            conn.execute(f"ALTER TABLE {name}_{ident} ALTER COLUMN big SET STORAGE EXTERNAL")
            conn.execute(f"INSERT INTO {name}_{ident} (code, t, j, ts, n, arr, b, big, flag, i, "
                         f"f, d, u, v) VALUES ({SNAPSHOT_ROW})")
        conn.execute(f"ALTER TABLE {name}_full REPLICA IDENTITY FULL")
        conn.execute(f"ALTER TABLE {name}_idx REPLICA IDENTITY USING INDEX {name}_idx_code_key")


def _records(bootstrap: str, prefix: str, name: str,
             ident: str | None) -> list[dict[str, Any]]:
    """The records of one table's topic, or (ident None) of the transaction topic."""
    topic = f"{prefix}.public.{name}_{ident}" if ident else f"{prefix}.transaction"
    found = read_topic(bootstrap, topic, minimum=10, timeout=90, settle=2)
    return [{
        "key": json.loads(r.key()) if r.key() else None,
        "value": json.loads(r.value()) if r.value() else None,
        "headers": [(k, v.decode() if v is not None else None) for k, v in (r.headers() or [])
                    if not k.startswith(DEBEZIUM_ONLY_HEADERS)],
    } for r in found]


def _normalise(record: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Blank what differs by design: processing times, the connector's name and version,
    and the snapshot's position (each connector snapshots at its own moment)."""
    text = json.dumps(record).replace(f"{prefix}.", "PREFIX.").replace(f'"{prefix}"', '"PREFIX"')
    out = json.loads(text)
    value = out["value"]
    if value is None:
        return out
    payload = value["payload"]
    for name in ("ts_ms", "ts_us", "ts_ns"):
        payload[name] = None
    source = payload.get("source")
    if source is None:  # a BEGIN/END record of the transaction topic
        return out
    source["version"] = None
    if payload["op"] == "r":
        source.update(lsn=None, txId=None, sequence=None, ts_ms=None, ts_us=None, ts_ns=None)
    return out


def _differences(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[str]:
    found = []
    if len(ours) != len(theirs):
        found.append(f"record count: labstream {len(ours)}, Debezium {len(theirs)}")
    for index, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        for part in ("key", "value", "headers"):
            if a[part] != b[part]:
                found.append(f"record {index} {part}:\n  labstream {json.dumps(a[part])[:600]}"
                             f"\n  Debezium  {json.dumps(b[part])[:600]}")
    return found


def test_records_equal_real_debezium_under_every_replica_identity(unique_name, database_url,
                                                                  kafka_bootstrap, tmp_path):
    _require_jvm_tools()
    # short enough for `<name>_<identity>` tables and slots, and unique per run: the
    # slug's head plus the fixture's random tail (a plain [:24] cut the tail off)
    name = f"{unique_name[:15]}_{unique_name[-8:]}"
    dbz_prefix, ours_prefix = f"{name}_dbz", f"{name}_ls"
    _create_tables(database_url, name)
    settings = cdc_settings(ours_prefix, serializer="json", provide_transaction_metadata=True,
                            table_include_list=rf"public\.{name}_.*")
    debezium = DebeziumConnect(
        name=dbz_prefix, table=f"public.{name}_.*", database_url=database_url,
        bootstrap=kafka_bootstrap, workdir=Path(tmp_path) / "debezium",
        libs=ensure_libs(REPO / ".state" / "bench" / "debezium" / "libs"),
        extra_connector={"provide.transaction.metadata": "true"}, rest_port=REST_PORT)
    try:
        debezium.start()
        with running(settings, database_url, kafka_bootstrap) as connector:
            wait_for(lambda: connector.phase == "streaming", 90, "labstream streaming")
            with psycopg.connect(database_url, autocommit=True) as conn:
                for ident in IDENTITIES:
                    _workload(conn, f"{name}_{ident}")
            captured = {ident: (_records(kafka_bootstrap, ours_prefix, name, ident),
                                _records(kafka_bootstrap, dbz_prefix, name, ident))
                        for ident in IDENTITIES}
            transactions = (_records(kafka_bootstrap, ours_prefix, name, None),
                            _records(kafka_bootstrap, dbz_prefix, name, None))
    finally:
        debezium.stop()
        cleanup(settings, database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND NOT active", (dbz_prefix,))
            conn.execute(f"DROP PUBLICATION IF EXISTS {dbz_prefix}")
    report = []
    for ident, (ours, theirs) in captured.items():
        ops = [(r["value"] or {}).get("payload", {}).get("op") for r in theirs]
        assert ops.count("d") == 2 and ops.count("c") >= 3, (ident, ops)  # PK changes seen
        diffs = _differences([_normalise(r, ours_prefix) for r in ours],
                             [_normalise(r, dbz_prefix) for r in theirs])
        report += [f"[{ident}] {d}" for d in diffs]
    ours, theirs = transactions
    assert len(theirs) >= 2 * 7 * len(IDENTITIES), len(theirs)  # BEGIN + END per transaction
    report += [f"[transaction] {d}" for d in _differences(
        [_normalise(r, ours_prefix) for r in ours], [_normalise(r, dbz_prefix) for r in theirs])]
    assert not report, "\n".join(report)
