"""One topic never carries two registries' schema ids: the connector refuses to switch
registries under a topic it already wrote, in either direction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cdc_helpers import (
    cdc_settings,
    cleanup,
    execute,
    read_topic,
    start_subprocess,
    stop_subprocess,
    wait_for,
)

from connectors.exceptions import MixedRegistries
from connectors.registry import RegistrySettings, registry_from_settings
from connectors.registry.db import DbSchemaRegistry
from connectors.registry.guard import ExternalRegistryGuard

pytestmark = pytest.mark.integration

OTHER = "http://registry.elsewhere.invalid:8081"
SCHEMA = json.dumps({"type": "record", "name": "V", "fields": [{"name": "id", "type": "int"}]})


@pytest.fixture
def subjects(database_url: str, unique_name: str) -> Iterator[tuple[str, str]]:
    names = (f"{unique_name}.lab-value", f"{unique_name}.ext-value")
    yield names
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in ("schema_registry", "schema_registry_external"):
            conn.execute(f"DELETE FROM labstream.{table} WHERE subject = ANY(%s)", (list(names),))


def test_each_registry_refuses_a_subject_the_other_has(
    database_url: str, subjects: tuple[str, str]
) -> None:
    in_lab, elsewhere = subjects
    lab = DbSchemaRegistry(database_url)
    lab.register(in_lab, SCHEMA)
    external = registry_from_settings(RegistrySettings(schema_registry_url=OTHER),
                                      database_url=database_url)
    with pytest.raises(MixedRegistries, match="lab-database registry") as refused:
        external.register(in_lab, SCHEMA)  # refused before any HTTP request
    assert refused.value.hint and "SCHEMA_REGISTRY_URL" in refused.value.hint

    ExternalRegistryGuard(database_url)(elsewhere, OTHER)  # what the HTTP path does first
    with pytest.raises(MixedRegistries, match=OTHER):
        DbSchemaRegistry(database_url).register(elsewhere, SCHEMA)
    assert lab.latest(elsewhere) is None
    lab.close()


def test_connector_restarted_with_another_registry_stops_with_the_reason(
    unique_name: str, database_url: str, kafka_bootstrap: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = cdc_settings(unique_name)
    topic = f"{settings.topic_prefix}.public.{unique_name}"
    execute(database_url, f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY)",
            f"INSERT INTO public.{unique_name} VALUES (1)")
    try:
        first = start_subprocess(settings, tmp_path / "lab.log")
        try:
            read_topic(kafka_bootstrap, topic, minimum=1, timeout=60)
        finally:
            assert stop_subprocess(first) == 0

        monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://127.0.0.1:9")  # nothing listens
        log = tmp_path / "external.log"
        second = start_subprocess(settings, log)
        try:
            execute(database_url, f"INSERT INTO public.{unique_name} VALUES (2)")
            wait_for(lambda: second.poll() is not None, 60, "the connector to stop")
        finally:
            code = stop_subprocess(second)
        output = log.read_text()
        assert code != 0 and "mix two registries" in output and topic in output, output[-2000:]
        assert "Traceback" not in output
        assert len(read_topic(kafka_bootstrap, topic, minimum=1, settle=1.0)) == 1
    finally:
        cleanup(settings, database_url)
        execute(database_url, "DELETE FROM labstream.schema_registry WHERE subject LIKE %s",
                params=(f"{topic}-%",))
