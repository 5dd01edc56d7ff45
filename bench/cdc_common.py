"""Shared parts of the CDC benchmarks (method: /work/shared/BENCHMARKING.md).

The connector runs as its own process (`labstream cdc run`), the benchmark topic is
created beforehand with `message.timestamp.type=LogAppendTime` so the broker stamps
arrival, and records are read back only after a phase, so the reader does not
compete for the CPUs while the connector works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from base.settings import service_settings
from connectors.registry import DbSchemaRegistry
from connectors.serde import AvroDeserializer

REPO = Path(__file__).resolve().parent.parent


class Bench:
    def __init__(self, serializer: str, label: str) -> None:
        services = service_settings()
        self.database_url = services.database_url
        self.bootstrap = services.kafka_bootstrap_servers
        self.serializer = serializer
        self.name = f"bench_{label}_{uuid.uuid4().hex[:6]}"
        self.table = f"public.{self.name}"
        self.topic = f"{self.name}.public.{self.name}"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- setup / teardown ------------------------------------------------------------------

    def setup(self) -> None:
        self.sql(f"""CREATE TABLE {self.table} (
            id bigserial PRIMARY KEY, tenant text NOT NULL, reading double precision,
            note text, qty integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())""")
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        topic = NewTopic(self.topic, num_partitions=1, replication_factor=1,
                         config={"message.timestamp.type": "LogAppendTime"})
        admin.create_topics([topic])[self.topic].result()

    def start(self) -> None:
        env = dict(os.environ)
        env.update({
            "LABSTREAM_CDC_NAME": self.name, "LABSTREAM_CDC_SLOT_NAME": self.name,
            "LABSTREAM_CDC_PUBLICATION": self.name, "LABSTREAM_CDC_TOPIC_PREFIX": self.name,
            "LABSTREAM_CDC_TABLE_INCLUDE_LIST": rf"public\.{self.name}",
            "LABSTREAM_CDC_SERIALIZER": self.serializer, "LABSTREAM_LOG_LEVEL": "WARNING",
        })
        self.log = open(REPO / ".state" / f"{self.name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "labstream.cli", "cdc", "run"],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = self.sql("SELECT snapshot_state FROM labstream.connector_offsets "
                            "WHERE connector_name = %s", (self.name,))
            if rows and rows[0][0] == "done":
                return
            time.sleep(0.2)
        raise RuntimeError("connector did not finish its (empty) snapshot")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(60)

    def teardown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        time.sleep(1)
        for statement in (
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name LIKE '{self.name}%' AND NOT active",
            f"DELETE FROM labstream.connector_offsets WHERE connector_name = '{self.name}'",
            f"DROP PUBLICATION IF EXISTS {self.name}",
            f"DROP TABLE IF EXISTS {self.table}",
        ):
            self.sql(statement)
        AdminClient({"bootstrap.servers": self.bootstrap}).delete_topics(
            [self.topic, f"__labstream-heartbeat.{self.name}"])

    # -- measuring --------------------------------------------------------------------------

    def sql(self, statement: str, params: Any = None) -> list[Any]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def end_offset(self) -> int:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.name})
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)
            return int(high or 0)
        finally:
            consumer.close()

    def wait_for_offset(self, target: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.end_offset() < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.end_offset()} of {target} records arrived")
            time.sleep(0.25)

    def read_back(self, start: int, end: int) -> list[tuple[int, int]]:
        """(broker timestamp ms, source.ts_ms = commit time) of records [start, end)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.name,
                             "enable.auto.commit": False, "check.crcs": False})
        consumer.assign([TopicPartition(self.topic, 0, start)])
        decode = self._decoder()
        out: list[tuple[int, int]] = []
        try:
            while len(out) < end - start:
                for message in consumer.consume(10_000, 1.0):
                    offset = message.offset()
                    if message.error() or message.value() is None or offset is None \
                            or offset >= end:
                        continue
                    out.append((message.timestamp()[1], decode(message.value())))
        finally:
            consumer.close()
        return out

    def _decoder(self) -> Any:
        if self.serializer == "json":
            return lambda raw: json.loads(raw)["payload"]["source"]["ts_ms"]
        avro = AvroDeserializer(DbSchemaRegistry(self.database_url))

        def commit_ms(raw: bytes) -> int:
            value = avro.decode(raw)
            assert value is not None
            return int(value["source"]["ts_ms"])

        return commit_ms


def percentile(sorted_values: list[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return f"nproc={os.cpu_count()} cpu={model!r}"
