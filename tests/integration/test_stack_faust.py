"""A Faust worker (aiokafka underneath) consumes, produces and commits on the stack's Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

pytestmark = pytest.mark.integration

APP = textwrap.dedent(
    """
    import os
    import faust

    app = faust.App(
        os.environ["APP_ID"],
        broker="kafka://" + os.environ["BOOTSTRAP"],
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1,
        broker_commit_interval=0.5,
    )
    source = app.topic(os.environ["SOURCE"], value_serializer="raw")
    sink = app.topic(os.environ["SINK"], value_serializer="raw")

    @app.agent(source)
    async def upper(stream):
        async for value in stream:
            await sink.send(value=value.upper())

    if __name__ == "__main__":
        app.main()
    """
)


def _wait_for(
    condition: Callable[[], bool], worker: subprocess.Popen[bytes], timeout_s: float, what: str,
    log: Path,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and worker.poll() is None:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout_s}s; worker log:\n{log.read_text()[-3000:]}")


def test_faust_worker_consumes_produces_and_commits(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    app_id, source, sink = f"app-{unique_name}", f"{unique_name}.in", f"{unique_name}.out"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for word in (b"alpha", b"beta", b"gamma"):
        producer.send(source, word).get(timeout=15)
    producer.close()

    (tmp_path / "app.py").write_text(APP)
    log = tmp_path / "worker.log"
    env = {**os.environ, "APP_ID": app_id, "BOOTSTRAP": kafka_bootstrap,
           "SOURCE": source, "SINK": sink}
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "app.py", "worker", "-l", "warn"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        consumer = KafkaConsumer(
            sink, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
            consumer_timeout_ms=1000,
        )
        produced: list[bytes] = []

        def read_three() -> bool:
            produced.extend(record.value for record in consumer)
            return len(produced) >= 3

        _wait_for(read_three, worker, 90, "the worker did not produce 3 records", log)
        consumer.close()

        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        partition = TopicPartition(source, 0)

        def committed() -> int | None:
            offsets = admin.list_group_offsets(app_id).get(app_id, {})
            return offsets[partition].offset if partition in offsets else None

        _wait_for(lambda: committed() == 3, worker, 30, "the worker did not commit offset 3", log)
        admin.close()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    assert produced == [b"ALPHA", b"BETA", b"GAMMA"]
