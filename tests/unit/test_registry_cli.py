"""`labstream registry serve` is wired into the CLI and reads its settings."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from connectors.registry.cli import RegistryServerSettings
from labstream import cli


def test_registry_serve_is_a_labstream_command() -> None:
    result = CliRunner().invoke(cli.app, ["registry", "serve", "--help"])
    assert result.exit_code == 0, result.output
    assert "schema.registry.url" in result.output and "--port" in result.output


def test_settings_default_to_confluents_port_and_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert RegistryServerSettings().port == 8081
    monkeypatch.setenv("LABSTREAM_REGISTRY_PORT", "18699")
    monkeypatch.setenv("LABSTREAM_REGISTRY_HOST", "0.0.0.0")
    settings = RegistryServerSettings()
    assert (settings.host, settings.port) == ("0.0.0.0", 18699)
