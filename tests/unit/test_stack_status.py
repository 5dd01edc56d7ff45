"""`status` on a stack that is not running: down, and who holds its ports, if anyone."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from base.settings import ServiceSettings
from labstream.stack import control
from labstream.stack.cli import stack as stack_cli
from labstream.stack.settings import StackSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp_path: Path, pg_port: int, kafka_port: int) -> ServiceSettings:
    return ServiceSettings(
        state_dir=tmp_path / "state",
        database_url=f"postgresql://lab:lab@127.0.0.1:{pg_port}/lab",
        kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
    )


def test_nothing_started_reports_both_down(tmp_path: Path) -> None:
    settings = _settings(tmp_path, _free_port(), _free_port())
    statuses = control.status(settings, StackSettings(kafka_controller_port=_free_port()))
    assert [(s.name, s.running, s.pid, s.port_holder) for s in statuses] == [
        ("postgres", False, None, None),
        ("kafka", False, None, None),
    ]


def test_a_foreign_listener_on_our_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = int(sock.getsockname()[1])
        settings = _settings(tmp_path, taken, _free_port())
        postgres_status = control.status(settings, StackSettings())[0]
    assert not postgres_status.running
    assert postgres_status.port_holder is not None
    assert f"pid {os.getpid()}" in postgres_status.port_holder


def test_down_on_a_missing_state_dir_does_nothing(tmp_path: Path) -> None:
    messages: list[str] = []
    control.down(purge=True, report=messages.append, settings=_settings(tmp_path, 1, 2))
    assert messages == []
    assert not (tmp_path / "state").exists()


def test_stale_pid_file_is_not_reported_as_running(tmp_path: Path) -> None:
    settings = _settings(tmp_path, _free_port(), _free_port())
    paths = control.state_paths(settings)
    paths.pids.mkdir(parents=True)
    # a pid that surely does not run our Kafka: this test process
    paths.kafka_pid.write_text(f"{os.getpid()}\nkafka.Kafka {paths.kafka_properties}\n")
    kafka_status = control.status(settings, StackSettings())[1]
    assert not kafka_status.running and kafka_status.pid is None


def test_status_cli_exits_1_and_prints_json_when_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, _free_port(), _free_port())
    monkeypatch.setattr(control, "service_settings", lambda: settings)
    result = CliRunner().invoke(stack_cli, ["status", "--json"])
    assert result.exit_code == 1
    assert [(item["name"], item["running"]) for item in json.loads(result.output)] == [
        ("postgres", False),
        ("kafka", False),
    ]
    table = CliRunner().invoke(stack_cli, ["status"])
    assert table.exit_code == 1
    assert "postgres  down" in table.output and "kafka     down" in table.output
