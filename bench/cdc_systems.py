"""The systems bench/cdc_compare.py measures: labstream's connector and real Debezium.

Each system gets its own slot, publication and topic prefix (`name`), captures one
table, and exposes the pid of the process under test (the `labstream cdc run`
subprocess; the Connect JVM) plus a decoder of its records' commit time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from common import REPO, sql
from debezium.connect_standalone import DebeziumConnect, ensure_libs

STATE = REPO / ".state" / "bench"
DEBEZIUM_LIBS = STATE / "debezium" / "libs"


class System(Protocol):
    label: str
    serializer: str

    def start(self) -> int: ...  # pid of the process under test, once it is streaming
    def alive(self) -> bool: ...
    def stop(self) -> int | None: ...
    def commit_ms_decoder(self) -> Callable[[bytes], int]: ...


def json_commit_ms(raw: bytes) -> int:
    """source.ts_ms of a JsonConverter-with-schemas record (Debezium's and labstream's)."""
    return int(json.loads(raw)["payload"]["source"]["ts_ms"])


@dataclass
class Labstream:
    """`labstream cdc run` as a subprocess, configured through LABSTREAM_CDC_*."""

    label: str
    serializer: str  # avro | json
    name: str
    table: str
    database_url: str
    profile_to: Path | None = None  # run under cProfile, stats written here at exit
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        schema, table = self.table.split(".")
        env = dict(os.environ)
        env.update(
            {
                "LABSTREAM_CDC_NAME": self.name,
                "LABSTREAM_CDC_SLOT_NAME": self.name,
                "LABSTREAM_CDC_PUBLICATION": self.name,
                "LABSTREAM_CDC_TOPIC_PREFIX": self.name,
                "LABSTREAM_CDC_TABLE_INCLUDE_LIST": rf"{schema}\.{table}",
                "LABSTREAM_CDC_SERIALIZER": self.serializer,
                "LABSTREAM_LOG_LEVEL": "WARNING",
                **self.extra_env,
            }
        )
        return env

    def start(self) -> int:
        command = [sys.executable]
        if self.profile_to is not None:
            command += ["-m", "cProfile", "-o", str(self.profile_to)]
        command += ["-m", "labstream.cli", "cdc", "run"]
        STATE.mkdir(parents=True, exist_ok=True)
        log = (STATE / f"{self.name}.log").open("wb")
        self.proc = subprocess.Popen(
            command, env=self.environment(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        self._wait_streaming(90)
        return self.proc.pid

    def _wait_streaming(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"labstream cdc exited early; see {STATE / self.name}.log")
            done = sql(
                self.database_url,
                "SELECT snapshot_state FROM labstream.connector_offsets WHERE connector_name = %s",
                (self.name,),
            )
            active = sql(
                self.database_url,
                "SELECT active FROM pg_replication_slots WHERE slot_name LIKE %s AND active",
                (self.name + "%",),
            )
            if done and done[0][0] in ("done", "skipped") and active:
                return
            time.sleep(0.2)
        raise RuntimeError(f"labstream cdc not streaming after {timeout_s:.0f} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def cleanup(self) -> None:
        sql(
            self.database_url,
            "DELETE FROM labstream.connector_offsets WHERE connector_name = %s",
            (self.name,),
        )

    def commit_ms_decoder(self) -> Callable[[bytes], int]:
        if self.serializer == "json":
            return json_commit_ms
        from connectors.registry import registry_from_settings
        from connectors.serde import AvroDeserializer

        avro = AvroDeserializer(registry_from_settings(database_url=self.database_url))

        def avro_commit_ms(raw: bytes) -> int:
            value = avro.decode(raw)
            assert value is not None
            return int(value["source"]["ts_ms"])

        return avro_commit_ms


@dataclass
class Debezium:
    """Debezium 3.6.1.Final in Kafka Connect 4.3.0 standalone, JsonConverter with schemas."""

    label: str
    name: str
    table: str
    database_url: str
    bootstrap: str
    connector_overrides: dict[str, str | int]
    serializer: str = "json"
    connect: DebeziumConnect | None = None

    def start(self) -> int:
        self.connect = DebeziumConnect(
            name=self.name,
            table=self.table,
            database_url=self.database_url,
            bootstrap=self.bootstrap,
            workdir=STATE / "debezium" / "runs" / self.name,
            libs=ensure_libs(DEBEZIUM_LIBS),
            extra_connector=self.connector_overrides,
        )
        return self.connect.start()

    def alive(self) -> bool:
        return self.connect is not None and self.connect.alive()

    def stop(self) -> int | None:
        return self.connect.stop() if self.connect is not None else None

    def cleanup(self) -> None:
        pass

    def commit_ms_decoder(self) -> Callable[[bytes], int]:
        return json_commit_ms


# label -> (kind, serializer, connector overrides). Order = order within a round.
SYSTEMS: dict[str, tuple[str, str, dict[str, str | int]]] = {
    "labstream-avro": ("labstream", "avro", {}),
    "labstream-json": ("labstream", "json", {}),
    # linger.ms 5 (the default until session 5) against today's 2: the steady tail vs CPU
    "labstream-json-linger5": ("labstream", "json", {"LABSTREAM_CDC_LINGER_MS": 5}),
    "labstream-avro-linger5": ("labstream", "avro", {"LABSTREAM_CDC_LINGER_MS": 5}),
    "debezium": ("debezium", "json", {}),
    "debezium-tuned": ("debezium", "json", {"poll.interval.ms": 10}),
    # the same transport as labstream's default (lz4 batches), so the ratio compares the
    # connectors, not the compression
    "debezium-tuned-lz4": ("debezium", "json", {"poll.interval.ms": 10,
                                                "producer.override.compression.type": "lz4"}),
}


def build_system(
    label: str,
    name: str,
    table: str,
    database_url: str,
    bootstrap: str,
    profile_to: Path | None = None,
) -> Labstream | Debezium:
    kind, serializer, overrides = SYSTEMS[label]
    if kind == "labstream":
        return Labstream(label, serializer, name, table, database_url, profile_to,
                         extra_env={k: str(v) for k, v in overrides.items()})
    return Debezium(label, name, table, database_url, bootstrap, overrides)
