"""`labstream registry serve` speaks Confluent's REST API: stock `SchemaRegistryClient`
and plain HTTP against the subprocess, on the real lab database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from registry_helpers import registry_server

from connectors.registry.server import CONTENT_TYPE

pytestmark = pytest.mark.integration


def record(*fields: dict[str, object], name: str = "Value") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "lab.public.t",
                       "fields": [{"name": "id", "type": "int"}, *fields]})


V1 = record()
V2 = record({"name": "note", "type": ["null", "string"], "default": None})
REQUIRED = record({"name": "qty", "type": "int"})  # no default: old data has no qty


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, stack: object) -> Iterator[str]:
    with registry_server(tmp_path_factory.mktemp("registry") / "registry.log") as served:
        yield served


@pytest.fixture
def subject(database_url: str, unique_name: str) -> Iterator[str]:
    name = f"{unique_name}-value"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.schema_registry WHERE subject = %s", (name,))
        conn.execute("DELETE FROM labstream.schema_registry_config WHERE subject = %s", (name,))


def error_of(response: httpx.Response) -> tuple[int, int]:
    assert response.headers["content-type"] == CONTENT_TYPE
    return response.status_code, response.json()["error_code"]


def test_stock_client_registers_looks_up_and_reads_versions(url: str, subject: str) -> None:
    client = SchemaRegistryClient({"url": url})
    first = client.register_schema(subject, Schema(V1, "AVRO"))
    assert first >= 1_000_000_000  # never an id another registry (counting from 1) hands out
    reformatted = json.dumps(json.loads(V1), indent=2)
    assert SchemaRegistryClient({"url": url}).register_schema(
        subject, Schema(reformatted, "AVRO")) == first
    second = client.register_schema(subject, Schema(V2, "AVRO"))
    assert second > first

    assert client.get_versions(subject) == [1, 2]
    assert subject in client.get_subjects()
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id, latest.schema.schema_str) == (2, second, V2)
    assert client.get_version(subject, 1).schema_id == first
    found = client.lookup_schema(subject, Schema(reformatted, "AVRO"))
    assert (found.version, found.schema_id) == (1, first)
    fresh = SchemaRegistryClient({"url": url})  # no cache: asks the server
    assert json.loads(fresh.get_schema(second).schema_str) == json.loads(V2)
    assert fresh.get_subjects_by_schema_id(first) == [subject]
    versions = httpx.get(f"{url}/schemas/ids/{second}/versions").json()
    assert versions == [{"subject": subject, "version": 2}]
    raw = httpx.get(f"{url}/subjects/{subject}/versions/latest/schema")
    assert raw.headers["content-type"] == CONTENT_TYPE and raw.json() == json.loads(V2)
    assert httpx.get(f"{url}/schemas/ids/{first}/schema").json() == json.loads(V1)


def test_backward_refuses_an_incompatible_schema_with_409(url: str, subject: str) -> None:
    client = SchemaRegistryClient({"url": url})
    client.register_schema(subject, Schema(V1, "AVRO"))
    client.set_compatibility(subject, "BACKWARD")
    assert httpx.get(f"{url}/config/{subject}").json() == {"compatibilityLevel": "BACKWARD"}
    assert client.test_compatibility(subject, Schema(V2, "AVRO"))
    assert not client.test_compatibility(subject, Schema(REQUIRED, "AVRO"), version=1)
    verbose = httpx.post(f"{url}/compatibility/subjects/{subject}/versions/latest",
                         params={"verbose": "true"}, json={"schema": REQUIRED}).json()
    assert verbose["is_compatible"] is False and "qty" in verbose["messages"][0]

    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(REQUIRED, "AVRO"))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert client.get_versions(subject) == [1]  # nothing registered

    # a subject-level NONE lets it through; the global level is untouched
    assert client.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    assert client.register_schema(subject, Schema(REQUIRED, "AVRO")) > 0
    assert client.get_versions(subject) == [1, 2]


def test_backward_is_the_global_default_when_nothing_is_set(database_url: str, url: str,
                                                            subject: str) -> None:
    with psycopg.connect(database_url) as conn:
        configured = conn.execute(
            "SELECT compatibility FROM labstream.schema_registry_config WHERE subject = ''"
        ).fetchone()
    assert configured is None, "the test stack's global level was set by hand (PUT /config); " \
        "delete the row with subject '' in labstream.schema_registry_config"
    assert httpx.get(f"{url}/config").json() == {"compatibilityLevel": "BACKWARD"}
    level = httpx.get(f"{url}/config/{subject}", params={"defaultToGlobal": "true"}).json()
    assert level == {"compatibilityLevel": "BACKWARD"}


def test_errors_carry_confluent_codes(url: str, subject: str) -> None:
    client = SchemaRegistryClient({"url": url})
    with pytest.raises(SchemaRegistryError) as unknown:
        client.get_latest_version(subject)
    assert unknown.value.error_code == 40401
    client.register_schema(subject, Schema(V1, "AVRO"))
    with pytest.raises(SchemaRegistryError) as no_version:
        client.get_version(subject, 7)
    assert no_version.value.error_code == 40402
    with pytest.raises(SchemaRegistryError) as no_schema:
        client.lookup_schema(subject, Schema(V2, "AVRO"))
    assert no_schema.value.error_code == 40403

    # an id below the 1e9 offset that no registry row can have, even in an old lab DB
    assert error_of(httpx.get(f"{url}/schemas/ids/999999999")) == (404, 40403)
    assert error_of(httpx.get(f"{url}/subjects/{subject}/versions/zero")) == (422, 42202)
    invalid = httpx.post(f"{url}/subjects/{subject}/versions", json={"schema": '{"type": "nope"}'})
    assert error_of(invalid) == (422, 42201)
    protobuf = httpx.post(f"{url}/subjects/{subject}/versions",
                          json={"schema": "syntax = 'proto3';", "schemaType": "PROTOBUF"})
    assert error_of(protobuf) == (422, 42201) and "PROTOBUF" in protobuf.json()["message"]
    assert error_of(httpx.get(f"{url}/config/{subject}")) == (404, 40408)
    assert error_of(httpx.put(f"{url}/config/{subject}", json={"compatibility": "SIDEWAYS"})) \
        == (422, 42203)
    assert error_of(httpx.delete(f"{url}/subjects/{subject}")) == (405, 405)
    assert error_of(httpx.get(f"{url}/no/such/route")) == (404, 404)
    assert error_of(httpx.get(f"{url}/subjects/a%00b/versions")) == (422, 422)  # not a 500
    assert client.get_versions(subject) == [1]  # the refused delete kept it


def test_store_down_is_a_500_with_code_50001(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             database_url: str) -> None:
    dead = database_url.rsplit("@", 1)[0] + "@127.0.0.1:1/lab"
    monkeypatch.setenv("LABSTREAM_DATABASE_URL", dead)
    with registry_server(tmp_path / "registry.log") as served:
        response = httpx.get(f"{served}/subjects")
    assert error_of(response) == (500, 50001)


def test_a_dropped_database_connection_is_reopened(url: str, subject: str,
                                                   database_url: str) -> None:
    client = SchemaRegistryClient({"url": url})
    schema_id = client.register_schema(subject, Schema(V1, "AVRO"))
    # what a PostgreSQL restart does to the server's connection
    with psycopg.connect(database_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'labstream-registry' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert killed and all(row[0] for row in killed)
    fresh = SchemaRegistryClient({"url": url})
    assert json.loads(fresh.get_schema(schema_id).schema_str) == json.loads(V1)
    assert fresh.register_schema(subject, Schema(V2, "AVRO")) > schema_id


def test_read_only_server_refuses_writes_with_42205(tmp_path: Path, subject: str) -> None:
    with registry_server(tmp_path / "registry.log", "--read-only") as served:
        client = SchemaRegistryClient({"url": served})
        with pytest.raises(SchemaRegistryError) as refused:
            client.register_schema(subject, Schema(V1, "AVRO"))
        assert (refused.value.http_status_code, refused.value.error_code) == (422, 42205)
        assert error_of(httpx.put(f"{served}/config", json={"compatibility": "NONE"})) == \
            (422, 42205)
        assert httpx.get(f"{served}/mode").json() == {"mode": "READONLY"}
        assert httpx.get(f"{served}/config").json()["compatibilityLevel"] == "BACKWARD"
