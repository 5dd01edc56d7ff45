from click.testing import CliRunner

from labstream.cli import app


def test_cdc_is_registered_and_run_lists_its_settings():
    result = CliRunner().invoke(app, ["cdc", "run", "--help"])
    assert result.exit_code == 0
    assert "LABSTREAM_CDC_SLOT_NAME [labstream]" in result.output
    assert "LABSTREAM_CDC_SNAPSHOT_MODE [initial]" in result.output


def test_reset_needs_yes_and_touches_nothing_without_it():
    result = CliRunner().invoke(app, ["cdc", "reset"])
    assert result.exit_code == 2
    assert "--yes" in result.output


def test_status_has_a_json_flag():
    result = CliRunner().invoke(app, ["cdc", "status", "--help"])
    assert result.exit_code == 0 and "--json" in result.output
