"""The shared kernel: CLI entry point, error formatting, structured logs."""

from __future__ import annotations

import logging
import subprocess
import sys

import click
import pytest

from base import logs
from base.errors import ConfigError, LabstreamError, RetryableError
from labstream import __version__, cli


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labstream.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_prints_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_lists_every_registered_subcommand() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in cli.SUBCOMMANDS:
        assert name in result.stdout


def test_every_registered_subcommand_imports_and_is_a_click_command() -> None:
    group = cli.app
    ctx = click.Context(group)
    for name in cli.SUBCOMMANDS:
        command = group.get_command(ctx, name)
        assert isinstance(command, click.Command), name


def test_labstream_error_becomes_one_line_message_and_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @click.command()
    def boom() -> None:
        raise ConfigError("LABSTREAM_CDC_SLOT_NAME is empty", hint="set it to a slot name")

    monkeypatch.setitem(cli.SUBCOMMANDS, "boom", (__name__, "boom_cmd", "test"))
    globals()["boom_cmd"] = boom
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["boom"])
    assert exit_info.value.code == ConfigError.exit_code
    err = capsys.readouterr().err
    assert "error: LABSTREAM_CDC_SLOT_NAME is empty" in err
    assert "fix: set it to a slot name" in err
    assert "Traceback" not in err


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "No such command" in capsys.readouterr().err


def test_error_str_includes_hint() -> None:
    err = RetryableError("broker away", retry_after=2.5, hint="wait")
    assert err.retry_after == 2.5
    assert str(err) == "broker away (fix: wait)"
    assert isinstance(err, LabstreamError)


def test_key_value_formatter_quotes_and_adds_fields() -> None:
    record = logging.LogRecord("labstream.x", logging.INFO, __file__, 1, "slot created", None, None)
    record.kv = {"slot": "labstream", "note": "two words"}
    line = logs.KeyValueFormatter().format(record)
    assert 'msg="slot created"' in line
    assert "slot=labstream" in line
    assert 'note="two words"' in line
    assert "level=info" in line


def test_formatter_adds_trace_id_inside_a_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("labstream.x", logging.INFO, __file__, 1, "inside", None, None)
    with tracer.start_as_current_span("work") as span:
        line = logs.KeyValueFormatter().format(record)
        expected = format(span.get_span_context().trace_id, "032x")
    assert f"trace_id={expected}" in line
