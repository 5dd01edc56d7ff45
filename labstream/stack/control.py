"""`up`, `down`, `status`: the stack as a whole, for the CLI and the test fixtures."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from base.logs import kv
from base.settings import ServiceSettings, service_settings
from labstream.stack import kafka, postgres, procs
from labstream.stack.paths import StatePaths, socket_dir_for
from labstream.stack.ports import find_listener, port_in_use, reserve_ports
from labstream.stack.settings import StackSettings, kafka_address, pg_address, stack_settings

log = logging.getLogger(__name__)
Report = Callable[[str], None]


def _log_report(message: str) -> None:
    kv(log, "info", message)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    log: str
    # something else listening on our port while we are not running
    port_holder: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def state_paths(settings: ServiceSettings) -> StatePaths:
    return StatePaths(settings.state_dir.resolve())


def _kafka_target(settings: ServiceSettings, knobs: StackSettings) -> kafka.KafkaTarget:
    host, port = kafka_address(settings)
    return kafka.KafkaTarget(host, port, knobs.kafka_controller_port)


def up(
    report: Report = _log_report,
    settings: ServiceSettings | None = None,
    knobs: StackSettings | None = None,
) -> list[ServiceStatus]:
    """Start PostgreSQL and Kafka (what is not running yet) and wait until both really work."""
    settings = settings or service_settings()
    knobs = knobs or stack_settings()
    paths = state_paths(settings)
    started = time.monotonic()
    java = kafka.ensure_java()  # fail on a missing tool before starting anything
    postgres.ensure_installed(report)
    ports = [pg_address(settings)[1], kafka_address(settings)[1], knobs.kafka_controller_port]
    if reserved := reserve_ports(ports):
        report(f"reserved ports {reserved} from the ephemeral range (ip_local_reserved_ports)")
    with procs.exclusive(paths.lock):
        _up_locked(paths, settings, knobs, java, report)
    report(f"stack is up in {time.monotonic() - started:.1f}s")
    return status(settings, knobs)


def _up_locked(
    paths: StatePaths, settings: ServiceSettings, knobs: StackSettings, java: str, report: Report
) -> None:
    if kafka.running_pid(paths) is None:
        kafka.ensure_libs(paths, report, version=knobs.kafka_version)
    elif not kafka.libs_current(paths, version=knobs.kafka_version):
        # never swap jars under a running broker
        report("Kafka runs from jars older than stack/kafka/pom.xml: "
               "`labstream stack down && labstream stack up` upgrades it")
    up_postgres(paths, settings, knobs, report)
    up_kafka(paths, settings, knobs, java, report)


def up_postgres(
    paths: StatePaths, settings: ServiceSettings, knobs: StackSettings, report: Report
) -> None:
    target = postgres.PgTarget.from_url(settings.database_url)
    home = postgres.prepare_home(paths, knobs.pg_data_root)
    bins = postgres.bin_dir(paths)
    if postgres.status_pid(paths) is None:
        report(
            f"starting PostgreSQL {bins.parent.name} on {target.host}:{target.port}, data {home}"
        )
    postgres.init_cluster(paths, home, bins, target)
    postgres.start(paths, home, bins, target, knobs.start_timeout_s)
    postgres.bootstrap_role(home, bins, target)
    postgres.wait_ready(settings.database_url, paths.pg_log, knobs.start_timeout_s)


def up_kafka(
    paths: StatePaths, settings: ServiceSettings, knobs: StackSettings, java: str, report: Report
) -> None:
    target = _kafka_target(settings, knobs)
    if kafka.running_pid(paths) is None:
        report(f"starting Kafka on {target.bootstrap} (controller :{target.controller_port})")
        kafka.write_config(paths, target)
        kafka.format_storage(paths, java)
        kafka.start(paths, java, target, knobs.kafka_heap)
    kafka.wait_ready(paths, settings.kafka_bootstrap_servers, knobs.start_timeout_s)


def down(
    purge: bool = False,
    report: Report = _log_report,
    settings: ServiceSettings | None = None,
    knobs: StackSettings | None = None,
) -> None:
    """Stop what `up` started (by pid); with purge, delete every file the stack wrote."""
    settings = settings or service_settings()
    knobs = knobs or stack_settings()
    paths = state_paths(settings)
    if not paths.state_dir.exists():
        return
    with procs.exclusive(paths.lock):
        if kafka.stop(paths):
            report("stopped Kafka")
        if postgres.stop(paths):
            report("stopped PostgreSQL")
        if purge:
            _purge(paths, knobs)
            report(f"deleted the stack's data under {paths.state_dir}")


def _purge(paths: StatePaths, knobs: StackSettings) -> None:
    link = paths.pg_link
    if link.is_symlink():
        target = link.resolve()
        link.unlink()
        shutil.rmtree(target, ignore_errors=True)
        home = target
    else:
        home = link.resolve()
        shutil.rmtree(link, ignore_errors=True)
    socket_dir = socket_dir_for(home)
    if socket_dir != home:
        shutil.rmtree(socket_dir, ignore_errors=True)
    for folder in (paths.kafka, paths.pids):
        shutil.rmtree(folder, ignore_errors=True)


def status(
    settings: ServiceSettings | None = None, knobs: StackSettings | None = None
) -> list[ServiceStatus]:
    settings = settings or service_settings()
    knobs = knobs or stack_settings()
    paths = state_paths(settings)
    pg_host, pg_port = pg_address(settings)
    kafka_target = _kafka_target(settings, knobs)
    pg_pid = postgres.status_pid(paths)
    kafka_pid = kafka.running_pid(paths)
    return [
        ServiceStatus(
            name="postgres",
            running=pg_pid is not None,
            pid=pg_pid,
            address=f"{pg_host}:{pg_port}",
            log=str(paths.pg_log),
            port_holder=None if pg_pid else _holder(pg_host, pg_port),
            extra={"data": str(paths.pg_data.resolve())},
        ),
        ServiceStatus(
            name="kafka",
            running=kafka_pid is not None,
            pid=kafka_pid,
            address=kafka_target.bootstrap,
            log=str(paths.kafka_log),
            port_holder=None if kafka_pid else _holder(kafka_target.host, kafka_target.broker_port),
            extra={
                "controller": f"{kafka_target.host}:{kafka_target.controller_port}",
                "data": str(paths.kafka_data),
            },
        ),
    ]


def _holder(host: str, port: int) -> str | None:
    if not port_in_use(host, port):
        return None
    listener = find_listener(port)
    return listener.describe() if listener else "unknown process"


def status_dicts(statuses: list[ServiceStatus]) -> list[dict[str, object]]:
    return [asdict(item) for item in statuses]


def log_file(service: str, settings: ServiceSettings | None = None) -> Path:
    paths = state_paths(settings or service_settings())
    return paths.pg_log if service == "postgres" else paths.kafka_log
