"""Our own single-node Kafka (KRaft), run from Maven Central jars under the state folder.

`stack/kafka/pom.xml` pins the version; Maven copies the jars into
`<state>/kafka/libs` once (again only when the pom changes). The broker runs as a
detached `java ... kafka.Kafka server.properties`, its pid in `<state>/pids/kafka.pid`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from base.kafka import kafka_connection
from labstream.stack import config, procs
from labstream.stack.exceptions import StackError, ToolMissing
from labstream.stack.paths import STACK_FILES, StatePaths
from labstream.stack.ports import ensure_port_free
from labstream.stack.settings import CONTROLLER_PORT_ENV, KAFKA_BOOTSTRAP_ENV

Report = Callable[[str], None]
POM = STACK_FILES / "kafka" / "pom.xml"
CHECK_TOPIC = "__labstream-stack-check"
JAVA_FIX = "apt-get install -y openjdk-17-jre-headless"
MIN_JAVA = 17


@dataclass(frozen=True)
class KafkaTarget:
    host: str
    broker_port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.broker_port}"


def java_major(version_output: str) -> int | None:
    """17 from `openjdk version "17.0.15"`, 8 from `java version "1.8.0_392"`."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def ensure_java(which: Callable[[str], str | None] = shutil.which) -> str:
    java = which("java")
    if java is None:
        raise ToolMissing("Java is not installed: Kafka needs a Java 17+ runtime", hint=JAVA_FIX)
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    major = java_major(result.stderr + result.stdout)
    if major is None or major < MIN_JAVA:
        raise ToolMissing(
            f"{java} is Java {major or 'of unknown version'}: Kafka 4 needs Java {MIN_JAVA}+",
            hint=JAVA_FIX,
        )
    return java


def libs_stamp(pom: Path = POM, version: str | None = None) -> str:
    """Changes when the pom or the version override does: then the jars are fetched again."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    return f"{digest} {version}" if version else digest


def libs_current(paths: StatePaths, pom: Path = POM, version: str | None = None) -> bool:
    stamp = paths.kafka_libs / ".pom-sha256"
    return stamp.exists() and stamp.read_text().strip() == libs_stamp(pom, version)


def ensure_libs(
    paths: StatePaths, report: Report, pom: Path = POM, version: str | None = None
) -> None:
    """Fetch the broker's jars with Maven unless the libs folder matches the pom."""
    if libs_current(paths, pom, version):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolMissing(
            "Maven is not installed: the stack fetches Kafka's jars from Maven Central with it",
            hint="apt-get install -y maven",
        )
    report(f"fetching Kafka jars from Maven Central ({pom}) into {paths.kafka_libs}")
    staging = paths.kafka / "libs.new"
    shutil.rmtree(staging, ignore_errors=True)
    override = [f"-Dkafka.version={version}"] if version else []
    try:
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", *override],
            capture_output=True, text=True, check=False, timeout=900,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolMissing(
            "Maven did not finish fetching Kafka's jars in 15 minutes",
            hint="check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml)",
        ) from exc
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        output = (result.stdout + result.stderr).strip()[-1500:]
        raise ToolMissing(
            f"Maven could not fetch Kafka's jars (exit {result.returncode}): {output}",
            hint="check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml)",
        )
    (staging / ".pom-sha256").write_text(libs_stamp(pom, version))
    shutil.rmtree(paths.kafka_libs, ignore_errors=True)
    staging.rename(paths.kafka_libs)


def write_config(paths: StatePaths, target: KafkaTarget) -> None:
    paths.kafka.mkdir(parents=True, exist_ok=True)
    paths.kafka_logs.mkdir(parents=True, exist_ok=True)
    paths.kafka_properties.write_text(
        config.kafka_properties(
            broker_port=target.broker_port,
            controller_port=target.controller_port,
            data_dir=paths.kafka_data,
        )
    )
    paths.kafka_log4j.write_text(config.kafka_log4j())


def _classpath(paths: StatePaths) -> str:
    return f"{paths.kafka_libs}/*"


def format_storage(paths: StatePaths, java: str) -> None:
    if (paths.kafka_data / "meta.properties").exists():
        return
    if not paths.kafka_cluster_id.exists():
        paths.kafka_cluster_id.write_text(config.new_cluster_id())
    cluster_id = paths.kafka_cluster_id.read_text().strip()
    result = subprocess.run(
        [java, f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
         f"-Dkafka.logs.dir={paths.kafka_logs}", "-cp", _classpath(paths),
         "kafka.tools.StorageTool", "format", "-t", cluster_id,
         "-c", str(paths.kafka_properties), "--ignore-formatted"],
        capture_output=True, text=True, check=False, timeout=120, cwd=paths.kafka,
    )
    if result.returncode != 0:
        raise StackError(
            f"formatting Kafka storage in {paths.kafka_data} failed: "
            f"{(result.stdout + result.stderr).strip()[-1500:]}",
            hint="`labstream stack down --purge` starts afresh",
        )


def marker(paths: StatePaths) -> str:
    return f"kafka.Kafka {paths.kafka_properties}"


def running_pid(paths: StatePaths) -> int | None:
    return procs.live_pid(paths.kafka_pid)


def start(paths: StatePaths, java: str, target: KafkaTarget, heap: str) -> int:
    if (pid := running_pid(paths)) is not None:
        return pid
    ensure_port_free("Kafka", target.host, target.broker_port, env_var=KAFKA_BOOTSTRAP_ENV)
    ensure_port_free(
        "Kafka controller", target.host, target.controller_port, env_var=CONTROLLER_PORT_ENV
    )
    argv = [
        java, f"-Xmx{heap}", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
        f"-Dkafka.logs.dir={paths.kafka_logs}",
        "-cp", _classpath(paths), "kafka.Kafka", str(paths.kafka_properties),
    ]
    pid = procs.spawn_detached(argv, log_path=paths.kafka_stdout, cwd=paths.kafka)
    procs.write_pid(paths.kafka_pid, pid, marker(paths))
    return pid


def log_tail(paths: StatePaths, count: int = 20) -> str:
    """The end of kafka.out and the errors (else the end) of server.log."""
    parts = []
    stdout = procs.tail_lines(paths.kafka_stdout, count)
    if stdout:
        parts.append(f"--- {paths.kafka_stdout} ---\n{stdout}")
    server_log = procs.tail_lines(paths.kafka_log, 2000).splitlines()
    errors = [line for line in server_log if _ERROR_LINE.search(line)]
    if server_log:
        parts.append(f"--- {paths.kafka_log} ---\n" + "\n".join((errors or server_log)[-count:]))
    return "\n".join(parts) or "(no log yet)"


_ERROR_LINE = re.compile(r"\] (ERROR|FATAL) |Exception|Error:")


def wait_ready(paths: StatePaths, bootstrap: str, timeout_s: float, *, own: bool = True) -> None:
    """A produce + consume round trip on the check topic, retried until timeout_s.

    With `own`, the broker is the one in our pid file: when it dies, fail at once
    with its log instead of waiting for the timeout.
    """
    deadline = time.monotonic() + timeout_s

    def fail_if_exited() -> None:
        record = procs.read_pid(paths.kafka_pid)
        if own and (record is None or not procs.pid_alive(record.pid)):
            raise StackError(
                f"Kafka exited while starting\n{log_tail(paths)}",
                hint="fix what the log says, then `labstream stack up` again",
            )

    last_error = "its port never accepted a connection"
    with _quiet_client_logs():
        while time.monotonic() < deadline:
            fail_if_exited()
            if not _accepts_connections(bootstrap):  # cheap, until the broker listens
                time.sleep(0.2)
                continue
            try:
                round_trip(bootstrap, timeout_s=min(15.0, max(1.0, deadline - time.monotonic())))
                return
            except Exception as exc:  # any client failure means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(1.0)
    fail_if_exited()
    raise StackError(
        f"Kafka at {bootstrap} did not complete a produce/consume round trip "
        f"in {timeout_s:.0f}s: {last_error}\n{log_tail(paths)}",
        hint="fix what the log says, then `labstream stack up` again",
    )


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    # kafka-python logs every refused connection while the broker boots: expected here
    kafka_logger = logging.getLogger("kafka")
    previous_level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_logger.setLevel(previous_level)


def _accepts_connections(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


def round_trip(bootstrap: str, timeout_s: float = 15.0, topic: str = CHECK_TOPIC) -> None:
    """Produce one record to `topic` and read exactly it back (kafka-python)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    payload = uuid.uuid4().hex.encode()
    timeout_ms = int(timeout_s * 1000)
    connection = kafka_connection(bootstrap)
    producer = KafkaProducer(
        **connection.kafka_python("stack-check"), acks="all", request_timeout_ms=timeout_ms,
        max_block_ms=timeout_ms,
    )
    try:
        sent = producer.send(topic, payload).get(timeout=timeout_s)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(
        **connection.kafka_python("stack-check"), enable_auto_commit=False, group_id=None,
        request_timeout_ms=30000,
    )
    try:
        partition = TopicPartition(topic, sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                if any(record.value == payload for record in records):
                    return
    finally:
        consumer.close()
    raise StackError(f"Kafka accepted a record on {topic} but it was not read back")


def stop(paths: StatePaths, grace_s: float = 30.0) -> bool:
    record = procs.read_pid(paths.kafka_pid)
    stopped = procs.terminate(record, grace_s=grace_s) if record else False
    paths.kafka_pid.unlink(missing_ok=True)
    return stopped
