"""`stack up` is idempotent and `status` tells the truth about what runs."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from labstream.stack import control
from labstream.stack.cli import stack as stack_cli
from labstream.stack.ports import find_listener
from labstream.stack.settings import kafka_address, pg_address

pytestmark = pytest.mark.integration


def test_status_reports_both_services_up_with_pids() -> None:
    statuses = {item.name: item for item in control.status()}
    pg_host, pg_port = pg_address()
    kafka_host, kafka_port = kafka_address()
    assert statuses["postgres"].running and statuses["postgres"].pid
    assert statuses["kafka"].running and statuses["kafka"].pid
    assert statuses["postgres"].address == f"{pg_host}:{pg_port}"
    assert statuses["kafka"].address == f"{kafka_host}:{kafka_port}"
    # the pids are the processes really listening on those ports
    postgres_listener = find_listener(pg_port)
    kafka_listener = find_listener(kafka_port)
    assert postgres_listener is not None and postgres_listener.pid == statuses["postgres"].pid
    assert kafka_listener is not None and kafka_listener.pid == statuses["kafka"].pid


def test_status_json_cli_lists_both_running() -> None:
    result = CliRunner().invoke(stack_cli, ["status", "--json"])
    assert result.exit_code == 0, result.output
    names = {item["name"]: item for item in json.loads(result.output)}
    assert set(names) == {"postgres", "kafka"}
    assert all(item["running"] and isinstance(item["pid"], int) for item in names.values())


def test_up_twice_keeps_the_same_processes() -> None:
    before = {item.name: item.pid for item in control.status()}
    messages: list[str] = []
    after = {item.name: item.pid for item in control.up(report=messages.append)}
    assert after == before
    assert not any(message.startswith("starting") for message in messages)


def test_logs_cli_shows_both_logs() -> None:
    result = CliRunner().invoke(stack_cli, ["logs", "-n", "5"])
    assert result.exit_code == 0, result.output
    assert "==> postgres:" in result.output and "==> kafka:" in result.output
    kafka_only = CliRunner().invoke(stack_cli, ["logs", "kafka", "-n", "3"])
    assert kafka_only.exit_code == 0
    assert len(kafka_only.output.splitlines()) == 3


def test_unique_name_is_a_safe_identifier(unique_name: str, request: pytest.FixtureRequest) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,31}", unique_name)
    other = request.getfixturevalue("unique_name")
    assert other == unique_name  # one per test, stable within it
