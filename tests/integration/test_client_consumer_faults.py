"""ChangeConsumer commits only what the loop body handled: a subscriber killed in the
middle of a record gets that record again, and nothing before it twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cdc_helpers import cdc_settings, cleanup, execute, read_topic, running, wait_for
from registry_helpers import registry_server

pytestmark = pytest.mark.integration

ROWS = 30
DIE_AT = 20
SUBSCRIBER = textwrap.dedent("""
    import os, signal
    from labstream_client import ChangeConsumer, ChangeEvent

    die_at = int(os.environ.get("DIE_AT", "-1"))
    with ChangeConsumer([os.environ["TOPIC"]], bootstrap_servers=os.environ["KAFKA"],
                        group_id=os.environ["GROUP"],
                        registry_url=os.environ["REGISTRY_URL"]) as records:
        for record in records:
            if not isinstance(record.value, ChangeEvent):
                continue
            row_id = record.value.row["id"]
            if row_id == die_at:
                records.commit()  # an automatic commit at the worst moment, then death
                os.kill(os.getpid(), signal.SIGKILL)
            print(f"done {row_id}", flush=True)
""")


def handled(log: Path) -> list[int]:
    return [int(line.split()[1]) for line in log.read_text().splitlines()
            if line.startswith("done ")]


def test_killed_subscriber_gets_the_record_it_was_handling_again(
    unique_name: str, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = cdc_settings(unique_name)
    topic = f"{settings.topic_prefix}.public.{unique_name}"
    execute(database_url, f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY)",
            f"INSERT INTO public.{unique_name} SELECT generate_series(1, {ROWS})")
    try:
        with running(settings, database_url, kafka_bootstrap):
            read_topic(kafka_bootstrap, topic, minimum=ROWS, timeout=60)
    finally:
        cleanup(settings, database_url)

    script = tmp_path / "subscriber.py"
    script.write_text(SUBSCRIBER)
    with registry_server(tmp_path / "registry.log") as url:
        env = {**os.environ, "TOPIC": topic, "KAFKA": kafka_bootstrap, "REGISTRY_URL": url,
               "GROUP": f"sub-{unique_name}"}
        first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
        with open(first_log, "wb") as out:
            first = subprocess.run([sys.executable, str(script)], env={**env, "DIE_AT":
                                   str(DIE_AT)}, stdout=out, stderr=subprocess.STDOUT,
                                   timeout=120, check=False)
        assert first.returncode == -signal.SIGKILL, first_log.read_text()[-2000:]
        with open(second_log, "wb") as out:
            second = subprocess.Popen([sys.executable, str(script)], env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: ROWS in handled(second_log) or second.poll() is not None, 120,
                     "the restarted subscriber to reach the last row")
        finally:
            second.terminate()
            second.wait(30)
    before, after = handled(first_log), handled(second_log)
    assert before == list(range(1, DIE_AT))
    assert after == list(range(DIE_AT, ROWS + 1)), second_log.read_text()[-2000:]
