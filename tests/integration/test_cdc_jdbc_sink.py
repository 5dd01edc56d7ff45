"""Real Debezium JDBC sink (3.6.0.Final, Maven Central) following the connector's JSON topics.

A user switching from Debezium keeps their sink: Kafka Connect standalone runs
`io.debezium.connector.jdbc.JdbcSinkConnector` (upsert, deletes on, key from the record
key) on labstream's topics into replica tables of identical DDL. After inserts, primary-key
changes, an update that leaves a TOASTed column untouched under REPLICA IDENTITY FULL,
deletes and edge values of each type, source and replica must be equal row for row. Needs
Java and Maven: fails, never skips, without them. Heavy (a JVM): marked slow.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from cdc_helpers import REPO, cdc_settings, cleanup, running, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

sys.path.insert(0, str(REPO / "bench"))
from debezium.connect_standalone import MAIN_CLASS, ensure_libs  # noqa: E402

REST_PORT = 18314  # this worktree's 183xx range (18313: the Debezium source test)
PLUGINS = REPO / ".state" / "bench" / "debezium" / "plugins"
SINK_POM = REPO / "bench" / "debezium" / "jdbc-sink" / "pom.xml"
DDL = ("id bigint PRIMARY KEY, t text, j jsonb, ts timestamptz, tsl timestamp, n numeric(20,6), "
       "arr text[], b bytea, big text, flag boolean, i int, s smallint, f float8, d date, "
       "u uuid, v varchar(20)")
COLUMNS = "id, t, j, ts, tsl, n, arr, b, big, flag, i, s, f, d, u, v"
EDGE_ROWS = [
    # every column NULL but the key
    "(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL)",
    # empty and unicode text, nested json, microseconds, extremes of each number type
    "(2, '', '{\"a\": {\"b\": [1, null, \"é\"]}}', '2026-01-02 03:04:05.123456+05:30', "
    "'1999-12-31 23:59:59.999999', 12345678901234.123456, ARRAY['', NULL, 'ü'], '\\x', "
    "'short', true, 2147483647, -32768, 1.5e300, '0001-01-01', "
    "'00000000-0000-0000-0000-000000000000', 'ωμέγα')",
    "(3, 'line1\nline2 \"q\" \\\\ tab\t', '[]', '1970-01-01 00:00:00+00', "
    "'2262-04-11 23:47:16', -0.000001, '{}', '\\x00ff10', repeat(md5('big'), 300), false, "
    "-2147483648, 32767, -2.5e-300, '9999-12-31', 'ffffffff-ffff-ffff-ffff-ffffffffffff', "
    "'x')",
]


def _require_jvm_tools() -> None:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: this test runs Debezium's JDBC sink "
                    "(apt-get install default-jdk-headless maven)", pytrace=False)


def _sink_plugin() -> Path:
    target = PLUGINS / "debezium-jdbc"
    if not any(target.glob("debezium-connector-jdbc-*.jar")):
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mvn", "-q", "-B", "-f", str(SINK_POM), "dependency:copy-dependencies",
                        f"-DoutputDirectory={target}"], check=True)
    return target


def _start_sink(workdir: Path, name: str, topics: list[str], replica: str, database_url: str,
                bootstrap: str) -> subprocess.Popen[bytes]:
    db = urlsplit(database_url)
    workdir.mkdir(parents=True, exist_ok=True)
    worker = {
        "bootstrap.servers": bootstrap,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "offset.storage.file.filename": str(workdir / "offsets.dat"),
        "listeners": f"http://127.0.0.1:{REST_PORT}",
        "plugin.path": str(PLUGINS),
        "consumer.auto.offset.reset": "earliest",
    }
    connector = {
        "name": name,
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": 1,
        "topics": ",".join(topics),
        "connection.url": f"jdbc:postgresql://{db.hostname}:{db.port}{db.path}",
        "connection.username": db.username or "lab",
        "connection.password": db.password or "",
        "insert.mode": "upsert",
        "delete.enabled": "true",
        "primary.key.mode": "record_key",
        "schema.evolution": "none",
        "collection.name.format": f"{replica}.${{source.table}}",
        "use.time.zone": "UTC",
        "batch.size": 100,
    }
    (workdir / "worker.properties").write_text("".join(f"{k}={v}\n" for k, v in worker.items()))
    (workdir / "sink.properties").write_text("".join(f"{k}={v}\n" for k, v in connector.items()))
    libs = ensure_libs(REPO / ".state" / "bench" / "debezium" / "libs")
    log = (workdir / "connect.log").open("wb")
    return subprocess.Popen(
        ["java", "-Xms128M", "-Xmx512M", "-cp", f"{libs}/*", MAIN_CLASS,
         str(workdir / "worker.properties"), str(workdir / "sink.properties")],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir)


def _failed_task_trace(connector: str) -> str | None:
    url = f"http://127.0.0.1:{REST_PORT}/connectors/{connector}/status"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status = json.load(response)
    except OSError:
        return None  # the worker's REST server is not up yet
    for task in status.get("tasks") or []:
        if task.get("state") == "FAILED":
            return str(task.get("trace", ""))
    return None


def _rows(conn: psycopg.Connection, table: str) -> list[tuple]:
    # text forms: equal values compare equal whatever the driver maps them to
    return conn.execute(f"SELECT {', '.join(f'{c}::text' for c in COLUMNS.split(', '))} "
                        f"FROM {table} ORDER BY id").fetchall()


def _workload(conn: psycopg.Connection, table: str) -> None:
    for row in EDGE_ROWS:
        conn.execute(f"INSERT INTO {table} ({COLUMNS}) VALUES {row}")
    conn.execute(f"UPDATE {table} SET t = 'touched', i = i + 1 WHERE id = 3")  # big: TOAST
    conn.execute(f"UPDATE {table} SET id = 30 WHERE id = 3")  # primary-key change
    conn.execute(f"UPDATE {table} SET id = 20, v = 'moved' WHERE id = 2")
    conn.execute(f"DELETE FROM {table} WHERE id = 1")
    conn.execute(f"INSERT INTO {table} (id, t) VALUES (4, 'after the delete')")


def test_debezium_jdbc_sink_replica_equals_the_source(unique_name, database_url,
                                                      kafka_bootstrap):
    _require_jvm_tools()
    _sink_plugin()
    name = unique_name[:24]
    replica = f"{name}_replica"
    tables = {"full": f"{name}_full", "dflt": f"{name}_dflt"}
    settings = cdc_settings(name, serializer="json", table_include_list=rf"public\.{name}_.*")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {replica}")
        for table in tables.values():
            conn.execute(f"CREATE TABLE public.{table} ({DDL})")
            conn.execute(f"ALTER TABLE public.{table} ALTER COLUMN big SET STORAGE EXTERNAL")
            conn.execute(f"CREATE TABLE {replica}.{table} ({DDL})")
        conn.execute(f"ALTER TABLE public.{tables['full']} REPLICA IDENTITY FULL")
    topics = [f"{name}.public.{table}" for table in tables.values()]
    workdir = REPO / ".state" / "tests" / name  # kept after a failure: connect.log
    sink = None
    try:
        with running(settings, database_url, kafka_bootstrap) as connector:
            wait_for(lambda: connector.phase == "streaming", 90, "labstream streaming")
            sink = _start_sink(workdir, f"{name}_sink", topics, replica,
                               database_url, kafka_bootstrap)
            with psycopg.connect(database_url, autocommit=True) as conn:
                _workload(conn, f"public.{tables['full']}")
                # DEFAULT identity: no TOAST-untouched update (that gives Debezium's
                # placeholder, docs/events.md), everything else the same
                for row in EDGE_ROWS[:2]:
                    conn.execute(f"INSERT INTO public.{tables['dflt']} ({COLUMNS}) VALUES {row}")
                conn.execute(f"UPDATE public.{tables['dflt']} SET id = 10 WHERE id = 1")
                conn.execute(f"DELETE FROM public.{tables['dflt']} WHERE id = 2")

            def replica_equal() -> bool:
                assert sink is not None and sink.poll() is None, "Connect exited; see log"
                failed = _failed_task_trace(f"{name}_sink")
                assert failed is None, f"the JDBC sink task FAILED:\n{failed[:3000]}"
                with psycopg.connect(database_url) as conn:
                    return all(_rows(conn, f"public.{t}") == _rows(conn, f"{replica}.{t}")
                               for t in tables.values())

            try:
                wait_for(replica_equal, 240, "the replica to equal the source")
            except AssertionError as timeout:
                text = (workdir / "connect.log").read_text()
                log = "\n".join(line for line in text.splitlines()
                                if "Caused by" in line or " ERROR " in line)[-6000:]
                with psycopg.connect(database_url) as conn:
                    state = {t: (_rows(conn, f"public.{t}"), _rows(conn, f"{replica}.{t}"))
                             for t in tables.values()}
                raise AssertionError(
                    f"replica differs: {state}\n--- connect.log ---\n{log}") from timeout
        with psycopg.connect(database_url) as conn:
            full = _rows(conn, f"{replica}.{tables['full']}")
        by_id = {int(r[0]): r for r in full}
        assert sorted(by_id) == [4, 20, 30]  # deletes and key changes applied
        assert len(by_id[30][8]) == 9600 and by_id[30][1] == "touched"  # TOAST value whole
    finally:
        if sink is not None:
            sink.terminate()
            try:
                sink.wait(60)
            except subprocess.TimeoutExpired:
                sink.kill()
        cleanup(settings, database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {replica} CASCADE")
