"""Shared helpers of the test_replay_* integration tests (not a test module).

`produce_runs(...)` writes Debezium-shaped Avro change events for a `runs`-like
table into a unique topic, through the codec's `AvroSerializer` and the lab-DB
schema registry, with explicit timestamps and a traceparent per record, so the
replay tests do not depend on the connector running.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.envelope import SourceInfo, build_change_event
from connectors.pgoutput import Relation, RelationColumn
from connectors.registry import DbSchemaRegistry
from connectors.schema import TableSchema
from connectors.serde import AvroSerializer

REPO = Path(__file__).resolve().parents[2]
TEXT, INT4 = 25, 23


@dataclass(frozen=True)
class RunSpec:
    """One change: the row after it, the op, the partition and the record timestamp."""

    run_id: str
    kind: str
    status: str
    op: str = "u"
    partition: int = 0
    timestamp_ms: int = 0
    priority: int = 5
    experiment_id: str | None = None
    instrument_id: str | None = None


@dataclass(frozen=True)
class Produced:
    spec: RunSpec
    partition: int
    offset: int
    traceparent: str

    @property
    def trace_id(self) -> str:
        return self.traceparent.split("-")[1]


def runs_schema(prefix: str) -> TableSchema:
    relation = Relation(
        oid=90001,
        namespace="public",
        name="runs",
        replica_identity="f",
        columns=(
            RelationColumn(True, "id", TEXT, -1),
            RelationColumn(False, "kind", TEXT, -1),
            RelationColumn(False, "status", TEXT, -1),
            RelationColumn(False, "priority", INT4, -1),
            RelationColumn(False, "experiment_id", TEXT, -1),
            RelationColumn(False, "instrument_id", TEXT, -1),
        ),
    )
    return TableSchema.from_relation(relation, topic_prefix=prefix, primary_key=("id",))


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic].result(15)


def delete_topics(bootstrap: str, *topics: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(list(topics), operation_timeout=15).values():
        with contextlib.suppress(Exception):  # cleanup of a topic that may not exist
            future.result(15)


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def produce_runs(
    bootstrap: str,
    database_url: str,
    prefix: str,
    specs: Sequence[RunSpec],
    *,
    partitions: int = 2,
    garbage_at: Sequence[int] = (),
) -> tuple[str, list[Produced]]:
    """Create `<prefix>.public.runs` and produce one Avro change event per spec.

    `garbage_at`: indexes whose value bytes are replaced by Confluent-framed bytes
    with an unknown schema id (a record that no longer decodes).
    """
    schema = runs_schema(prefix)
    topic = schema.topic
    create_topic(bootstrap, topic, partitions)
    serializer = AvroSerializer(DbSchemaRegistry(database_url))
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    delivered: dict[int, tuple[int, int]] = {}
    traceparents = []
    for index, spec in enumerate(specs):
        row = {
            "id": spec.run_id,
            "kind": spec.kind,
            "status": spec.status,
            "priority": spec.priority,
            "experiment_id": spec.experiment_id,
            "instrument_id": spec.instrument_id,
        }
        before = dict(row, status="running") if spec.op == "u" else None
        source = SourceInfo(
            name=prefix,
            db="lab",
            schema="public",
            table="runs",
            ts_us=spec.timestamp_ms * 1000,
            lsn=1000 + index,
            tx_id=500 + index,
        )
        event = build_change_event(
            schema,
            spec.op,
            before,
            None if spec.op == "d" else row,  # type: ignore[arg-type]
            source,
            None,
            spec.timestamp_ms,
        )
        value = serializer.value_bytes(event)
        if index in garbage_at:
            value = b"\x00\x7f\xff\xff\xf0" + b"garbage"
        traceparent = new_traceparent()
        traceparents.append(traceparent)

        def on_delivery(error: Any, message: Any, index: int = index) -> None:
            assert error is None, error
            delivered[index] = (message.partition(), message.offset())

        producer.produce(
            topic,
            key=serializer.key_bytes(event),
            value=value,
            partition=spec.partition,
            timestamp=spec.timestamp_ms,
            headers=[("traceparent", traceparent.encode()), ("lab-origin", b"replay-test")],
            on_delivery=on_delivery,
        )
    assert producer.flush(30) == 0
    produced = [
        Produced(spec, *delivered[index], traceparents[index]) for index, spec in enumerate(specs)
    ]
    return topic, produced


def read_all(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every record of `topic`, per partition in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{secrets.token_hex(4)}",
            "enable.auto.commit": False,
        }
    )
    try:
        records: list[Any] = []
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            got: list[Any] = []
            while len(got) < high - low:
                message = consumer.poll(5)
                assert message is not None, f"{topic}/{partition}: timed out after {len(got)}"
                assert message.error() is None, message.error()
                got.append(message)
            records += got
        return records
    finally:
        consumer.close()


def labstream(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """Run the CLI in a subprocess (like a user would), capturing output."""
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "labstream"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or dict(os.environ),
        check=False,
    )


def start_labstream(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "labstream"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **(env or {})),
        # a child inherits an ignored SIGINT, and then Python installs no Ctrl-C handler:
        # start it with the default, as from a shell (the Ctrl-C tests depend on it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )


def header(message: Any, name: str) -> str | None:
    for key, value in message.headers() or []:
        if key == name:
            return value.decode()
    return None


PYTHON = sys.executable
