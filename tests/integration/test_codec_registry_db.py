"""DbSchemaRegistry against the real lab database (table labstream.schema_registry, 0002)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from connectors.exceptions import UnknownSchemaId
from connectors.registry.db import DbSchemaRegistry

pytestmark = pytest.mark.integration


def schema(*extra_fields: str) -> str:
    fields = [{"name": "id", "type": "int"}]
    fields += [{"name": name, "type": ["null", "string"], "default": None} for name in extra_fields]
    return json.dumps({"type": "record", "name": "Value", "namespace": "lab.public.t",
                       "fields": fields})


@pytest.fixture
def subject(database_url: str, unique_name: str):
    name = f"codec.{unique_name}-value"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.schema_registry WHERE subject = %s", (name,))


def test_same_schema_twice_same_id_and_evolution_new_version(
    database_url: str, subject: str
) -> None:
    registry = DbSchemaRegistry(database_url)
    first = registry.register(subject, schema())
    # A second process (fresh cache) registering the same schema, reformatted, gets the same id.
    other = DbSchemaRegistry(database_url)
    assert other.register(subject, json.dumps(json.loads(schema()), indent=1)) == first
    evolved = other.register(subject, schema("note"))
    assert evolved != first
    latest = DbSchemaRegistry(database_url).latest(subject)
    assert latest is not None and (latest.version, latest.schema_id) == (2, evolved)
    assert DbSchemaRegistry(database_url).get_schema(first) == schema()
    registry.close()
    other.close()


def test_concurrent_registration_is_safe(database_url: str, subject: str) -> None:
    texts = [schema(*[f"c{i}" for i in range(n)]) for n in range(4)] * 3

    def register(text: str) -> int:
        registry = DbSchemaRegistry(database_url)
        try:
            return registry.register(subject, text)
        finally:
            registry.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(register, texts))
    assert len(set(ids)) == 4
    for text, schema_id in zip(texts, ids, strict=True):
        assert ids[texts.index(text)] == schema_id
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute(
            "SELECT version FROM labstream.schema_registry WHERE subject = %s ORDER BY version",
            (subject,))]
    assert versions == [1, 2, 3, 4]


def test_unknown_id_is_reported(database_url: str) -> None:
    with pytest.raises(UnknownSchemaId):
        DbSchemaRegistry(database_url).get_schema(2_000_000_000)


def test_latest_of_unknown_subject_is_none(database_url: str, unique_name: str) -> None:
    assert DbSchemaRegistry(database_url).latest(f"codec.none.{unique_name}") is None


def test_new_ids_start_at_the_configured_offset(database_url: str, subject: str) -> None:
    # a second registry (ids from 1) and this one never hand out the same id
    registry = DbSchemaRegistry(database_url, id_offset=1_100_000_000)
    try:
        assert registry.register(subject, schema()) >= 1_100_000_000
        assert DbSchemaRegistry(database_url).register(subject, schema("x")) > 1_100_000_000
    finally:
        registry.close()


def test_connector_path_refuses_a_breaking_version(database_url: str, subject: str) -> None:
    from connectors.exceptions import IncompatibleSchema

    registry = DbSchemaRegistry(database_url)
    registry.register(subject, schema())
    required = json.loads(schema())
    required["fields"].append({"name": "qty", "type": "int"})
    with pytest.raises(IncompatibleSchema, match=subject) as refused:
        registry.register(subject, json.dumps(required))
    assert refused.value.hint and "PUT /config/" in refused.value.hint
    assert registry.latest(subject).version == 1  # type: ignore[union-attr]
