"""Running it as an operator does: SIGTERM, `cdc status --json`, heartbeats, odd tables."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from cdc_helpers import (
    REPO,
    Decoder,
    cdc_environment,
    cdc_settings,
    cleanup,
    execute,
    offsets_row,
    read_topic,
    running,
    slot_row,
    start_subprocess,
    stop_subprocess,
    wait_for,
)

from connectors.pgoutput import str_to_lsn

pytestmark = pytest.mark.integration


def _status(settings) -> dict:
    out = subprocess.run([sys.executable, "-m", "labstream.cli", "cdc", "status", "--json"],
                         env=cdc_environment(settings), cwd=REPO, capture_output=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


def test_sigterm_flushes_confirms_and_exits_zero(unique_name, database_url, kafka_bootstrap,
                                                 tmp_path):
    settings = cdc_settings(unique_name)
    table = f"public.{unique_name}"
    execute(database_url, f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    proc = start_subprocess(settings, tmp_path / "cdc.log")
    try:
        wait_for(lambda: (row := offsets_row(database_url, unique_name))
                 and row["snapshot_state"] == "done", 30, "the (empty) snapshot")
        ((before_lsn,),) = execute(database_url, "SELECT pg_current_wal_lsn()::text")
        for i in range(50):
            execute(database_url, f"INSERT INTO {table} VALUES ({i}, 'x')")
        read_topic(kafka_bootstrap, f"{unique_name}.{table}", minimum=50)
        running_status = _status(settings)
        assert running_status["slot_active"] is True
        assert stop_subprocess(proc, signal.SIGTERM) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log = (tmp_path / "cdc.log").read_text()
    try:
        assert "msg=stopped" in log and "Traceback" not in log
        # `v text` under REPLICA IDENTITY DEFAULT can produce the TOAST placeholder
        toast_warning = next(line for line in log.splitlines() if "TOASTable" in line)
        assert f"{table}(v)" in toast_warning and "REPLICA IDENTITY FULL" in toast_warning
        _, confirmed = wait_for(lambda: (row := slot_row(database_url, unique_name))
                                     and not row[0] and row, 10, "the slot to be released")
        assert str_to_lsn(confirmed) > str_to_lsn(before_lsn)
        status = _status(settings)
        assert status["slot_active"] is False and status["snapshot_state"] == "done"
        assert status["confirmed_flush_lsn"] == confirmed
        assert isinstance(status["lag_bytes"], int) and status["lag_seconds"] is not None
        assert str_to_lsn(status["last_acked_commit_lsn"]) > str_to_lsn(before_lsn)
    finally:
        cleanup(settings, database_url)


def test_heartbeats_let_an_idle_slot_advance(unique_name, database_url, kafka_bootstrap):
    settings = cdc_settings(unique_name, heartbeat_interval_ms=300)
    execute(database_url, f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY)",
            f"CREATE TABLE public.nocap_{unique_name} (id int PRIMARY KEY)")
    try:
        with running(settings, database_url, kafka_bootstrap):
            wait_for(lambda: (row := offsets_row(database_url, unique_name))
                     and row["snapshot_state"] == "done", 20, "the snapshot")
            # WAL that the slot never streams (a table outside the publication)
            execute(database_url, f"INSERT INTO public.nocap_{unique_name} "
                    "SELECT generate_series(1, 1000)")
            ((wal_lsn,),) = execute(database_url, "SELECT pg_current_wal_lsn()::text")
            wait_for(lambda: str_to_lsn(slot_row(database_url, unique_name)[1])
                     >= str_to_lsn(wal_lsn), 15, "the idle slot to confirm past the WAL end")
            beats = read_topic(kafka_bootstrap, f"__labstream-heartbeat.{unique_name}",
                               minimum=1)
        assert Decoder(database_url)(beats[0].key()) == {"serverName": unique_name}
    finally:
        execute(database_url, f"DROP TABLE IF EXISTS public.nocap_{unique_name}")
        cleanup(settings, database_url)


def test_table_without_primary_key_gets_null_keys(unique_name, database_url, kafka_bootstrap,
                                                  caplog):
    settings = cdc_settings(unique_name)
    table = f"public.{unique_name}"
    execute(database_url, f"CREATE TABLE {table} (reading float8, at timestamptz)",
            f"INSERT INTO {table} VALUES (4.5, '2026-01-01T00:00:00Z')")
    try:
        with running(settings, database_url, kafka_bootstrap):
            read_topic(kafka_bootstrap, f"{unique_name}.{table}", minimum=1)
            execute(database_url, f"INSERT INTO {table} VALUES (5.5, now())")
            records = read_topic(kafka_bootstrap, f"{unique_name}.{table}", minimum=2)
        assert [r.key() for r in records] == [None, None]
        values = [Decoder(database_url)(r.value()) for r in records]
        assert [v["op"] for v in values] == ["r", "c"]
        assert values[0]["after"]["at"] == "2026-01-01T00:00:00.000000Z"
        warnings = [r for r in caplog.records if "no primary key" in r.getMessage()]
        assert len(warnings) == 1  # once per table, not per record
    finally:
        cleanup(settings, database_url)


@pytest.mark.parametrize("broken", ["database", "kafka"])
def test_unreachable_services_are_retried_until_stopped(broken, unique_name, database_url,
                                                        kafka_bootstrap, caplog):
    import logging
    import threading
    import time

    from connectors.source.connector import CdcConnector

    settings = cdc_settings(unique_name, reconnect_backoff_max_s=1.0)
    connector = CdcConnector(
        settings,
        database_url="postgresql://lab:lab@127.0.0.1:1/lab" if broken == "database"
        else database_url,
        bootstrap_servers="127.0.0.1:1" if broken == "kafka" else kafka_bootstrap,
    )
    caplog.set_level(logging.WARNING)
    thread = threading.Thread(target=connector.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sum("reconnecting" in r.getMessage() for r in caplog.records) >= 2,
                 40, "two reconnect attempts")
    finally:
        started = time.monotonic()
        connector.stop()
        thread.join(30)
        cleanup(settings, database_url)
    assert not thread.is_alive() and time.monotonic() - started < 15
    lines = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    assert all("Traceback" not in r.getMessage() for r in lines)
