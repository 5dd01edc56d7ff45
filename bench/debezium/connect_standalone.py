"""Run real Debezium (Kafka Connect standalone) as the reference for bench/cdc_compare.py.

The jars (Debezium 3.6.1.Final PostgreSQL connector, Kafka Connect 4.3.0 runtime and
JsonConverter) come from Maven Central through `bench/debezium/pom.xml` into
`.state/bench/debezium/libs`. The JVM is started directly (no shell script) so its pid
is the process measured; heap and GC flags are those of Kafka's
`connect-standalone.sh` / `kafka-run-class.sh`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

POM = Path(__file__).resolve().parent / "pom.xml"
MAIN_CLASS = "org.apache.kafka.connect.cli.ConnectStandalone"
# Kafka's scripts: KAFKA_HEAP_OPTS of connect-standalone.sh, KAFKA_JVM_PERFORMANCE_OPTS.
JVM_FLAGS = [
    "-Xms256M",
    "-Xmx2G",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]


def ensure_libs(libs: Path) -> Path:
    """Resolve the jars with Maven once; later runs reuse the directory."""
    if not any(libs.glob("debezium-connector-postgres-*.jar")):
        libs.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
            ],
            check=True,
        )
    return libs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _properties(values: Mapping[str, str | int]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


@dataclass
class DebeziumConnect:
    """One Connect standalone worker running one Debezium PostgreSQL connector."""

    name: str  # slot, publication, topic prefix and connector name
    table: str  # schema.table captured
    database_url: str
    bootstrap: str
    workdir: Path
    libs: Path
    extra_connector: dict[str, str | int]  # e.g. {"poll.interval.ms": 10}
    proc: subprocess.Popen[bytes] | None = None
    rest_port: int = 0  # 0: any free port

    def render(self) -> tuple[Path, Path]:
        db = urlsplit(self.database_url)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rest_port = self.rest_port or _free_port()
        worker = {
            "bootstrap.servers": self.bootstrap,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "true",
            "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": str(self.workdir / "offsets.dat"),
            "listeners": f"http://127.0.0.1:{self.rest_port}",
            "producer.acks": "all",
        }
        connector = {
            "name": self.name,
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max": 1,
            "plugin.name": "pgoutput",
            "database.hostname": db.hostname or "127.0.0.1",
            "database.port": db.port or 5432,
            "database.user": db.username or "lab",
            "database.password": db.password or "",
            "database.dbname": db.path.lstrip("/") or "lab",
            "topic.prefix": self.name,
            # a regex; not escaped, since a .properties file would eat the backslash
            "table.include.list": self.table,
            "slot.name": self.name,
            "publication.name": self.name,
            "publication.autocreate.mode": "filtered",
            **self.extra_connector,
        }
        worker_file = self.workdir / "worker.properties"
        connector_file = self.workdir / "connector.properties"
        worker_file.write_text(_properties(worker))
        connector_file.write_text(_properties(connector))
        return worker_file, connector_file

    def start(self, timeout_s: float = 180) -> int:
        worker_file, connector_file = self.render()
        log = (self.workdir / "connect.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "java",
                *JVM_FLAGS,
                "-cp",
                f"{self.libs}/*",
                MAIN_CLASS,
                str(worker_file),
                str(connector_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self._wait_running(timeout_s)
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _task_state(self) -> str:
        url = f"http://127.0.0.1:{self.rest_port}/connectors/{self.name}/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status = json.load(response)
        except OSError:
            return "NOT-YET"
        tasks = status.get("tasks") or [{"state": "NOT-YET"}]
        return str(tasks[0]["state"])

    def _wait_running(self, timeout_s: float) -> None:
        """Task RUNNING, then the slot held by a walsender (streaming has begun)."""
        import psycopg

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"Connect exited early; see {self.workdir / 'connect.log'}")
            if self._task_state() == "FAILED":
                raise RuntimeError(f"Debezium task FAILED; see {self.workdir / 'connect.log'}")
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                active = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.name,)
                ).fetchone()
            if active and active[0] and self._task_state() == "RUNNING":
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"Debezium not streaming after {timeout_s:.0f} s; see {self.workdir / 'connect.log'}"
        )

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
