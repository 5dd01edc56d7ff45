"""Run stream workers as subprocesses against the real stack, feed CDC-shaped records,
read what they produce. Used by tests/integration/test_streams_*.py (not a test module)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from connectors.registry import DbSchemaRegistry
from connectors.serde import AvroDeserializer
from streams.config import WorkerSettings
from streams.fixtures import LabChanges
from streams.topics import ensure_topics

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class WorkerHarness:
    def __init__(self, name: str, bootstrap: str, tmp_path: Path, *, launch_jobs: bool = False,
                 extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.tmp_path = tmp_path
        self.env = {
            "LABSTREAM_WORKER_APP_ID": f"{name}-worker",
            "LABSTREAM_WORKER_CDC_PREFIX": name,
            "LABSTREAM_WORKER_ROUTED_PREFIX": f"{name}.routed",
            "LABSTREAM_WORKER_DECISIONS_TOPIC": f"{name}.decisions",
            "LABSTREAM_WORKER_PARTITIONS": "4",
            "LABSTREAM_WORKER_ENRICHMENT_WAIT_S": "1.0",
            "LABSTREAM_WORKER_SESSION_TIMEOUT_S": "6",
            "LABSTREAM_WORKER_LAUNCH_JOBS": "true" if launch_jobs else "false",
            "LABSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            **(extra_env or {}),
        }
        self.settings = WorkerSettings(
            app_id=f"{name}-worker", cdc_prefix=name, routed_prefix=f"{name}.routed",
            decisions_topic=f"{name}.decisions", partitions=4)
        ensure_topics(self.settings)
        self.changes = LabChanges(DbSchemaRegistry(), topic_prefix=name)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.workers: list[subprocess.Popen[bytes]] = []
        self._consumers: dict[str, Consumer] = {}
        self._seen: dict[str, list[Any]] = {}
        self._deserializer = AvroDeserializer(DbSchemaRegistry())

    # -- workers ----------------------------------------------------------------------------
    def start_worker(self) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        log = (self.tmp_path / f"worker-{index}.log").open("wb")
        env = {**os.environ, **self.env,
               "LABSTREAM_WORKER_DATA_DIR": str(self.tmp_path / f"data-{index}")}
        process = subprocess.Popen(
            [sys.executable, "-m", "labstream.cli", "worker"]
            + ([] if self.env["LABSTREAM_WORKER_LAUNCH_JOBS"] == "true" else ["--no-jobs"]),
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(process)
        return process

    def log_text(self, index: int) -> str:
        return (self.tmp_path / f"worker-{index}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for consumer in self._consumers.values():
            consumer.close()
        self._consumers.clear()
        self._delete_topics()

    def _delete_topics(self) -> None:
        from confluent_kafka.admin import AdminClient

        from streams.topics import worker_topics

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [*worker_topics(self.settings).all_names,
                 f"{self.settings.app_id}-__assignor-__leader"]
        existing = set(admin.list_topics(timeout=10).topics)
        doomed = [name for name in names if name in existing]
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # a topic already gone is fine at cleanup
                future.result(30)

    # -- input ------------------------------------------------------------------------------
    def send(self, table: str, op: str, after: dict[str, Any] | None,
             before: dict[str, Any] | None = None, **kwargs: Any) -> None:
        topic, key, value = self.changes.encode(table, op, after, before, **kwargs)
        self.producer.produce(topic, key=key, value=value,
                              headers=[("traceparent", TRACEPARENT.encode())])

    def send_raw(self, table: str, key: bytes, value: bytes) -> None:
        self.producer.produce(f"{self.name}.public.{table}", key=key, value=value,
                              headers=[("x-origin", b"test")])

    def flush(self) -> None:
        assert self.producer.flush(15) == 0

    # -- output -----------------------------------------------------------------------------
    def topic(self, suffix: str) -> str:
        return {"decisions": self.settings.decisions_topic,
                "dlq": self.settings.dlq_topic}.get(suffix, f"{self.name}.routed.{suffix}")

    def records(self, suffix: str) -> list[Any]:
        """Everything read so far from one output topic (decoded), polling for more."""
        topic = self.topic(suffix)
        consumer = self._consumers.get(topic)
        if consumer is None:
            consumer = Consumer({"bootstrap.servers": self.bootstrap,
                                 "group.id": f"reader-{uuid.uuid4().hex}",
                                 "auto.offset.reset": "earliest", "enable.auto.commit": False})
            consumer.subscribe([topic])
            self._consumers[topic] = consumer
            self._seen[topic] = []
        for message in consumer.consume(num_messages=1000, timeout=0.5):
            if message.error():
                continue
            self._seen[topic].append(self._decode(suffix, message))
        return self._seen[topic]

    def _decode(self, suffix: str, message: Any) -> dict[str, Any]:
        headers = dict(message.headers() or [])
        if suffix == "decisions":
            body = json.loads(message.value())
        elif suffix == "dlq":
            body = {"value": message.value()}
        else:
            body = self._deserializer.decode(message.value())
        return {"key": message.key(), "headers": headers, "partition": message.partition(),
                **(body or {})}

    def wait_for(self, suffix: str, predicate: Callable[[list[Any]], bool], *,
                 timeout_s: float = 60.0, what: str = "") -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.records(suffix)
            if predicate(found):
                return found
            self._fail_if_a_worker_died()
        raise AssertionError(f"timed out waiting for {what or suffix}; got "
                             f"{len(self.records(suffix))} records: {self.records(suffix)[-3:]}"
                             f"\nworker 0 log tail:\n{self.log_text(0)[-3000:]}")

    def _fail_if_a_worker_died(self) -> None:
        for index, process in enumerate(self.workers):
            code = process.poll()
            if code is not None and code not in (-signal.SIGKILL, -signal.SIGTERM):
                raise AssertionError(f"worker {index} exited with {code}:\n"
                                     f"{self.log_text(index)[-3000:]}")


def reference_rows(harness: WorkerHarness, *, tenant: str = "acme") -> None:
    harness.send("tenants", "c", {"id": tenant, "name": "Acme", "tier": "standard"})
    harness.send("experiments", "c", {"id": "exp-1", "tenant_id": tenant, "kind": "hplc",
                                      "status": "running", "title": "t", "submitted_by": "ana",
                                      "protocol": "{}", "priority": 5})
    harness.send("instruments", "c", {"id": "hplc-01", "name": "HPLC #1", "kind": "hplc",
                                      "location": "a", "status": "running"})


def rule_row(rule_id: str, event_kind: str, *, enabled: bool = True,
             command: list[str] | None = None, tenant_id: str | None = None) -> dict[str, Any]:
    return {"id": rule_id, "tenant_id": tenant_id, "enabled": enabled, "event_kind": event_kind,
            "condition": "{}", "backend": "local", "image": None,
            "command": json.dumps(command or ["true", "{payload.run_id}"]), "env": "{}",
            "timeout_s": 30, "max_concurrency": 4}


def run_row(run_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": run_id, "experiment_id": "exp-1", "instrument_id": "hplc-01",
            "status": status, "result": '{"peaks": [{"rt_min": 2.5, "area": 10, "height": 1}]}',
            **extra}
