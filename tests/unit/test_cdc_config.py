import pytest
from pydantic import ValidationError

from connectors.source.config import CdcSettings, TableFilter, settings_reference
from connectors.source.exceptions import CdcConfigError


def test_empty_lists_capture_every_lab_table_but_never_labstream_schema():
    tables = TableFilter.parse("", "")
    assert tables.captures("public", "experiments")
    assert not tables.captures("labstream", "connector_offsets")
    assert not tables.captures("pg_catalog", "pg_class")


def test_include_list_matches_the_whole_qualified_name():
    tables = TableFilter.parse(r"public\.exp.*, public\.runs", "")
    assert tables.captures("public", "experiments")
    assert tables.captures("public", "runs")
    assert not tables.captures("public", "runs_archive")  # fullmatch, not search
    assert not tables.captures("other", "experiments")


def test_exclude_list_wins_and_labstream_cannot_be_included():
    tables = TableFilter.parse(r".*", r"public\.secret")
    assert not tables.captures("public", "secret")
    assert tables.captures("public", "open")
    assert not tables.captures("labstream", "jobs")


def test_bad_regex_names_the_setting():
    with pytest.raises(CdcConfigError, match="LABSTREAM_CDC_TABLE_INCLUDE_LIST"):
        TableFilter.parse("public\\.(", "")


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("LABSTREAM_CDC_SLOT_NAME", "my_slot")
    monkeypatch.setenv("LABSTREAM_CDC_SNAPSHOT_MODE", "never")
    settings = CdcSettings()
    assert settings.slot_name == "my_slot"
    assert settings.connector_name == "my_slot"
    assert settings.snapshot_mode == "never"
    assert settings.heartbeat_topic == "__labstream-heartbeat.lab"
    assert settings.topic_for("public", "runs") == "lab.public.runs"


def test_invalid_slot_name_and_snapshot_mode_are_rejected():
    with pytest.raises(ValidationError):
        CdcSettings(slot_name="Bad-Name")
    with pytest.raises(ValidationError):
        CdcSettings(snapshot_mode="sometimes")


def test_reference_lists_every_field_with_its_env_name():
    names = {row[0] for row in settings_reference()}
    assert "LABSTREAM_CDC_HEARTBEAT_INTERVAL_MS" in names
    assert len(names) == len(CdcSettings.model_fields)
    assert all(description for _, _, description in settings_reference())
