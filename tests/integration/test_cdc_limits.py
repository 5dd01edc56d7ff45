"""One bad record never stalls the lab: oversized rows, permanent errors, retries.

Each test runs the real connector against the real stack: records larger than their
topic takes follow the oversized-record mode, permanent errors end the process with
one line, and a hundred reconnects leave threads and file descriptors where they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from cdc_helpers import (
    REPO,
    cdc_environment,
    cdc_settings,
    cleanup,
    execute,
    read_topic,
    running,
    wait_for,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from connectors.source.connector import CdcConnector
from connectors.source.exceptions import OversizedRecord
from connectors.source.oversized import REFERENCE_PREFIX, fetch_value

pytestmark = pytest.mark.integration


def _payload(record) -> dict:
    return json.loads(record.value())["payload"]


def _create_tables(database_url: str, name: str) -> None:
    execute(database_url,
            f"CREATE TABLE {name}_big (id int PRIMARY KEY, note text, doc jsonb, blob bytea)",
            f"CREATE TABLE {name}_small (id int PRIMARY KEY, v text)")


def _topic_limit(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result()
    return int(configs["max.message.bytes"].value)


def test_oversized_rows_become_references_and_other_tables_keep_flowing(
        unique_name, database_url, kafka_bootstrap):
    """A 2 MB row fits the topics the connector creates (8 MiB); a 300 kB row on a topic
    that takes only 100 kB is sent with its big columns as references to the lab DB,
    and the other table's later changes arrive behind it."""
    settings = cdc_settings(unique_name, serializer="json")
    big_topic, small_topic = f"{unique_name}.public.{unique_name}_big", \
        f"{unique_name}.public.{unique_name}_small"
    _create_tables(database_url, unique_name)
    # a topic that existed before the connector, with a smaller limit than ours
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(big_topic, 1, 1, config={"max.message.bytes": "100000"})])[
        big_topic].result()
    note = "n" * 150_000
    doc = json.dumps({"k": "d" * 150_000})
    blob = os.urandom(1000)
    try:
        with running(settings, database_url, kafka_bootstrap):
            wait_for(lambda: _slot_active(database_url, unique_name), 60, "streaming")
            execute(database_url,
                    f"INSERT INTO {unique_name}_big VALUES (1, %s, %s, %s)",
                    params=(note, doc, blob))
            execute(database_url, f"INSERT INTO {unique_name}_small VALUES (1, %s)",
                    params=("x" * 2_000_000,))
            execute(database_url, f"INSERT INTO {unique_name}_small VALUES (2, 'after')")
            smalls = read_topic(kafka_bootstrap, small_topic, minimum=2, timeout=60)
            bigs = read_topic(kafka_bootstrap, big_topic, minimum=1, timeout=30)
        assert _topic_limit(kafka_bootstrap, small_topic) == settings.max_record_bytes
        # the 2 MB row went through whole: topic and producer agree on 8 MiB
        assert [_payload(r)["after"]["id"] for r in smalls] == [1, 2]
        assert len(_payload(smalls[0])["after"]["v"]) == 2_000_000
        assert len(bigs) == 1 and len(bigs[0].value()) < 100_000
        after = _payload(bigs[0])["after"]
        assert after["note"].startswith(REFERENCE_PREFIX)
        assert json.loads(after["doc"]) == {"labstream-oversized": int(
            json.loads(after["doc"])["labstream-oversized"])}
        with psycopg.connect(database_url) as conn:
            assert fetch_value(conn, after["note"]) == note
            assert json.loads(str(fetch_value(conn, after["doc"]))) == json.loads(doc)
        assert after["id"] == 1 and after["blob"] is not None  # small column kept in place
    finally:
        cleanup(settings, database_url)
        execute(database_url, "DELETE FROM labstream.cdc_oversized_values WHERE topic = %s",
                params=(big_topic,))


def test_oversized_record_in_fail_mode_stops_naming_table_key_and_lsn(
        unique_name, database_url, kafka_bootstrap):
    settings = cdc_settings(unique_name, serializer="json", oversized_record_mode="fail",
                            max_record_bytes=65_536)
    _create_tables(database_url, unique_name)
    try:
        connector = CdcConnector(settings, database_url=database_url,
                                 bootstrap_servers=kafka_bootstrap)
        execute(database_url, f"INSERT INTO {unique_name}_big (id, note) VALUES (7, %s)",
                params=("z" * 200_000,))
        with pytest.raises(OversizedRecord) as failure:
            connector.run()  # snapshot reads the row: stops, never loops
        text = str(failure.value)
        assert f"public.{unique_name}_big" in text and '{"id":7}' in text
        assert "LSN" in text and "LABSTREAM_CDC_MAX_RECORD_BYTES" in text
    finally:
        cleanup(settings, database_url)


def _slot_active(database_url: str, slot: str) -> bool:
    rows = execute(database_url, "SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                   params=(slot,))
    return bool(rows and rows[0][0])


def _cdc_run(settings, env_overrides: dict[str, str], timeout: float = 60):
    env = cdc_environment(settings)
    env.update(env_overrides)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "labstream.cli", "cdc", "run"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - started


@pytest.mark.parametrize(("case", "override", "expected"), [
    ("password", {"LABSTREAM_DATABASE_URL": "postgresql://lab:wrong@127.0.0.1:{pg}/lab"},
     "refused the password"),
    ("database", {"LABSTREAM_DATABASE_URL": "postgresql://lab:lab@127.0.0.1:{pg}/nosuchdb"},
     'no database nosuchdb'),
    ("url", {"LABSTREAM_DATABASE_URL": "not a url"}, "not a valid PostgreSQL URL"),
    ("kafka_host", {"LABSTREAM_KAFKA_BOOTSTRAP_SERVERS": "no-such-host.invalid:9092"},
     "does not resolve"),
])
def test_permanent_errors_exit_non_zero_with_one_line(case, override, expected, unique_name,
                                                     database_url, kafka_bootstrap):
    settings = cdc_settings(unique_name)
    port = database_url.rsplit(":", 1)[1].split("/")[0]
    env = {k: v.replace("{pg}", port) for k, v in override.items()}
    try:
        proc, took = _cdc_run(settings, env)
    finally:
        cleanup(settings, database_url)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0, proc.stderr
    assert len(errors) == 1 and expected in errors[0] and "fix:" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "%3|" not in proc.stderr + proc.stdout
    assert took < 30


def test_unreachable_kafka_logs_through_our_logger_rate_limited(unique_name, database_url,
                                                                kafka_bootstrap, tmp_path):
    """A broker that refuses connections is transient (it may be restarting): retried,
    and librdkafka's FAIL lines come through the project's logger, a few, not a flood."""
    settings = cdc_settings(unique_name, reconnect_backoff_max_s=1.0)
    env = cdc_environment(settings)
    env["LABSTREAM_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
    log = Path(tmp_path) / "cdc.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "labstream.cli", "cdc", "run"], env=env,
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: log.read_text().count("reconnecting") >= 3, 60, "three retries")
        assert proc.poll() is None  # transient: still retrying
    finally:
        proc.terminate()
        code = proc.wait(30)
        cleanup(settings, database_url)
    text = log.read_text()
    assert code == 0
    assert "%3|" not in text and "%7|" not in text
    assert 0 < text.count("librdkafka") <= 12, text[-3000:]


def _threads_and_fds() -> tuple[int, int]:
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def _terminate_walsender(database_url: str, slot: str) -> bool:
    """Kill the walsender of the connector's slot (a hand-over slot `<slot>_h...` too)."""
    rows = execute(database_url,
                   "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                   "WHERE slot_name LIKE %s AND active", params=(slot + "%",))
    return bool(rows and rows[0][0])


@pytest.mark.slow
def test_a_hundred_reconnects_leave_threads_and_fds_flat_and_resend_at_most_once_each(
        unique_name, database_url, kafka_bootstrap):
    settings = cdc_settings(unique_name, serializer="json", reconnect_backoff_max_s=0.05,
                            heartbeat_interval_ms=0)
    execute(database_url, f"CREATE TABLE {unique_name} (id int PRIMARY KEY)")
    topic = f"{unique_name}.public.{unique_name}"
    samples: list[tuple[int, int]] = []
    written = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal written
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(f"INSERT INTO {unique_name} VALUES (%s)", (written,))
                written += 1
                stop.wait(0.01)

    thread = threading.Thread(target=writer, daemon=True)
    try:
        with running(settings, database_url, kafka_bootstrap) as connector:
            wait_for(lambda: connector.phase == "streaming", 60, "streaming")
            thread.start()
            for attempt in range(100):
                wait_for(lambda: _terminate_walsender(database_url, unique_name), 30,
                         f"walsender of attempt {attempt}")
                if attempt in (10, 99):
                    wait_for(lambda: _slot_active(database_url, unique_name), 30, "reconnect")
                    samples.append(_threads_and_fds())
            stop.set()
            thread.join(10)
            records = read_topic(kafka_bootstrap, topic, minimum=written, timeout=60, settle=1)
    finally:
        stop.set()
        cleanup(settings, database_url)
    (threads_10, fds_10), (threads_100, fds_100) = samples
    assert threads_100 <= threads_10 + 2, samples
    assert fds_100 <= fds_10 + 4, samples
    counts: dict[int, int] = {}
    for record in records:
        if record.value() is not None:
            key = _payload(record)["after"]["id"]
            counts[key] = counts.get(key, 0) + 1
    assert set(counts) == set(range(written))  # nothing lost
    assert max(counts.values()) <= 1 + 100  # at most one re-send per retry


@pytest.mark.slow
def test_postgres_and_kafka_restarts_are_transient_and_lose_nothing(unique_name, database_url,
                                                                    kafka_bootstrap):
    """A real restart of each service: the connector backs off, comes back, loses nothing,
    and never mistakes the restart for a permanent error (it would exit after 1 attempt)."""
    from base.settings import service_settings
    from labstream.stack import control, kafka, postgres

    settings = cdc_settings(unique_name, serializer="json", reconnect_backoff_max_s=1.0,
                            permanent_error_attempts=1)
    execute(database_url, f"CREATE TABLE {unique_name} (id int PRIMARY KEY)")
    topic = f"{unique_name}.public.{unique_name}"
    paths = control.state_paths(service_settings())

    def insert(first: int) -> None:
        execute(database_url, *[f"INSERT INTO {unique_name} VALUES ({i})"
                                for i in range(first, first + 10)])

    try:
        with running(settings, database_url, kafka_bootstrap) as connector:
            wait_for(lambda: connector.phase == "streaming", 60, "streaming")
            insert(0)
            assert postgres.stop(paths)
            control.up()
            insert(10)
            assert kafka.stop(paths)
            control.up()
            insert(20)
            wait_for(lambda: connector.phase == "streaming", 120, "streaming again")
            records = read_topic(kafka_bootstrap, topic, minimum=30, timeout=120, settle=1)
    finally:
        control.up()  # the stack stays usable for the next test whatever happened
        cleanup(settings, database_url)
    ids = {_payload(r)["after"]["id"] for r in records if r.value() is not None}
    assert ids == set(range(30))


@pytest.mark.slow
def test_sigkill_around_an_oversized_row_loses_nothing_and_reuses_its_reference(
        unique_name, database_url, kafka_bootstrap, tmp_path):
    """SIGKILL right after an oversized row commits, then again after its record is out:
    every version arrives, each re-sent copy points at the same kept value."""
    import signal

    from cdc_helpers import start_subprocess, stop_subprocess

    settings = cdc_settings(unique_name, serializer="json", max_record_bytes=65_536)
    execute(database_url, f"CREATE TABLE {unique_name} (id int PRIMARY KEY, note text)")
    topic = f"{unique_name}.public.{unique_name}"
    log = Path(tmp_path) / "cdc.log"
    notes = {i: f"{i}:" + "x" * 150_000 for i in range(3)}
    try:
        proc = start_subprocess(settings, log)
        wait_for(lambda: _slot_active(database_url, unique_name), 60, "streaming")
        execute(database_url, f"INSERT INTO {unique_name} VALUES (0, %s)", params=(notes[0],))
        stop_subprocess(proc, signal.SIGKILL)  # maybe before, maybe after its record
        proc = start_subprocess(settings, log)
        execute(database_url, f"INSERT INTO {unique_name} VALUES (1, %s)", params=(notes[1],))
        read_topic(kafka_bootstrap, topic, minimum=2, timeout=60)
        stop_subprocess(proc, signal.SIGKILL)  # records out, confirmation maybe not
        proc = start_subprocess(settings, log)
        execute(database_url, f"INSERT INTO {unique_name} VALUES (2, %s)", params=(notes[2],))
        records = read_topic(kafka_bootstrap, topic, minimum=3, timeout=60, settle=1)
        assert stop_subprocess(proc) == 0
        # one change = (row, op, LSN); a snapshot read ('r', after a kill mid-start) of a
        # row is another change than its insert and has its own reference
        refs: dict[tuple[int, str, int], set[str]] = {}
        for record in records:
            payload = _payload(record)
            change = (payload["after"]["id"], payload["op"], payload["source"]["lsn"])
            refs.setdefault(change, set()).add(payload["after"]["note"])
        assert {row_id for row_id, _, _ in refs} == {0, 1, 2}  # nothing lost
        with psycopg.connect(database_url) as conn:
            for (row_id, _, _), found in refs.items():
                assert len(found) == 1, found  # a re-sent copy carries the same reference
                assert fetch_value(conn, next(iter(found))) == notes[row_id]
    finally:
        cleanup(settings, database_url)
        execute(database_url, "DELETE FROM labstream.cdc_oversized_values WHERE topic = %s",
                params=(topic,))
