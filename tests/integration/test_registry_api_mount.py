"""The lab API serves the registry routes under /registry, read-only."""

from __future__ import annotations

import json

import psycopg
from starlette.testclient import TestClient

from connectors.registry.db import DbSchemaRegistry
from connectors.registry.server import CONTENT_TYPE
from labstream.api.app import create_app


def test_registry_routes_are_mounted_read_only_in_the_lab_api(
    database_url: str, unique_name: str
) -> None:
    subject = f"{unique_name}-value"
    schema = json.dumps({"type": "record", "name": "V", "fields": [{"name": "a", "type": "int"}]})
    schema_id = DbSchemaRegistry(database_url).register(subject, schema)  # as the connector
    try:
        with TestClient(create_app(database_url=database_url)) as client:
            by_id = client.get(f"/registry/schemas/ids/{schema_id}")
            assert by_id.headers["content-type"] == CONTENT_TYPE
            assert json.loads(by_id.json()["schema"]) == json.loads(schema)
            assert subject in client.get("/registry/subjects").json()
            assert client.get(f"/registry/subjects/{subject}/versions/latest").json()["id"] \
                == schema_id
            found = client.post(f"/registry/subjects/{subject}", json={"schema": schema})
            assert found.json()["version"] == 1  # lookups are reads
            missing = client.get("/registry/subjects/no-such-subject-x/versions")
            assert (missing.status_code, missing.json()["error_code"]) == (404, 40401)
            for write in (client.post(f"/registry/subjects/{subject}/versions",
                                      json={"schema": schema}),
                          client.put(f"/registry/config/{subject}", json={"compatibility": "NONE"}),
                          client.delete(f"/registry/config/{subject}")):
                assert (write.status_code, write.json()["error_code"]) == (422, 42205)
            assert client.get("/registry/mode").json() == {"mode": "READONLY"}
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM labstream.schema_registry WHERE subject = %s", (subject,))
