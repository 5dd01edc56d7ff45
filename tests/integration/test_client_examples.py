"""The client package's README examples (clients/python/examples/), run as a subscriber
would run them, decode labstream's records and join the record's trace."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cdc_helpers import (
    REPO,
    cdc_settings,
    cleanup,
    execute,
    read_topic,
    running,
    wait_for,
)
from registry_helpers import registry_server

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "clients" / "python" / "examples"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
CHANGE = re.compile(r"\b([rcudt]) (\{.*\}) ([0-9a-f]{32})\s*$")  # what the examples print


@pytest.fixture
def cdc(unique_name: str, database_url: str, serializer: str):
    settings = cdc_settings(unique_name, serializer=serializer)
    execute(database_url,
            f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY, name text NOT NULL, "
            "volume numeric(8,2))",
            f"INSERT INTO public.{unique_name} VALUES (1, 'untraced', 1.50)")
    yield settings
    cleanup(settings, database_url)


def run_example(name: str, env: dict[str, str], log: Path, lines: int) -> list[list[str]]:
    """Run an example until it printed `lines` lines; returns them split in words."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *(["worker", "-l", "warn"]
                                                      if "faust" in name else [])],
            cwd=log.parent, env={**os.environ, **env}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    printed: list[list[str]] = []

    def enough() -> bool:  # Faust logs what an agent prints: match inside the line
        found = (CHANGE.search(line) for line in log.read_text().splitlines())
        printed[:] = [[m[1], m[2], m[3]] for m in found if m]
        return len(printed) >= lines or proc.poll() is not None

    try:
        wait_for(enough, 120, f"{name} to print {lines} changes")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert len(printed) >= lines, log.read_text()[-3000:]
    return printed


@pytest.mark.parametrize(("example", "serializer"), [
    ("faust_subscriber.py", "avro"), ("plain_consumer.py", "avro"), ("plain_consumer.py", "json"),
])
def test_example_decodes_changes_and_joins_their_trace(
    example: str, serializer: str, cdc, database_url: str, kafka_bootstrap: str, tmp_path: Path,
    unique_name: str,
) -> None:
    table, topic = f"public.{cdc.slot_name}", f"{cdc.topic_prefix}.public.{cdc.slot_name}"
    with running(cdc, database_url, kafka_bootstrap):
        read_topic(kafka_bootstrap, topic, minimum=1, timeout=60)
        execute(database_url,
                f"SELECT pg_logical_emit_message(true, 'traceparent', '{TRACEPARENT}')",
                f"INSERT INTO {table} VALUES (2, 'traced', 2.25)")
        execute(database_url, f"DELETE FROM {table} WHERE id = 1")  # + a tombstone
        read_topic(kafka_bootstrap, topic, minimum=4, timeout=60)

    with registry_server(tmp_path / "registry.log") as url:
        env = {"REGISTRY_URL": url, "KAFKA": kafka_bootstrap, "TOPIC": topic,
               "APP_ID": f"example-{unique_name}"}
        printed = run_example(example, env, tmp_path / "example.log", lines=3)

    # JSON records decode to the same values as Avro (Decimal from Connect's base64)
    ops = [words[0] for words in printed[:3]]
    assert ops == ["r", "c", "d"]
    snapshot, traced, deleted = printed[:3]
    assert snapshot[1] == "{'id': 1, 'name': 'untraced', 'volume': Decimal('1.50')}"
    assert traced[1] == "{'id': 2, 'name': 'traced', 'volume': Decimal('2.25')}"
    assert deleted[1].startswith("{'id': 1,")
    # the subscriber's span continues the trace of the transaction that wrote the row
    assert traced[-1] == TRACE_ID
    assert snapshot[-1] != TRACE_ID and len(snapshot[-1]) == 32
    assert deleted[-1] != TRACE_ID
