"""The lab API serves the same registry routes under /registry."""

from __future__ import annotations

import json

import psycopg
from starlette.testclient import TestClient

from connectors.registry.server import CONTENT_TYPE
from labstream.api.app import create_app


def test_registry_routes_are_mounted_in_the_lab_api(database_url: str, unique_name: str) -> None:
    subject = f"{unique_name}-value"
    schema = json.dumps({"type": "record", "name": "V", "fields": [{"name": "a", "type": "int"}]})
    try:
        with TestClient(create_app(database_url=database_url)) as client:
            registered = client.post(f"/registry/subjects/{subject}/versions",
                                     json={"schema": schema})
            assert registered.status_code == 200, registered.text
            schema_id = registered.json()["id"]
            by_id = client.get(f"/registry/schemas/ids/{schema_id}")
            assert by_id.headers["content-type"] == CONTENT_TYPE
            assert json.loads(by_id.json()["schema"]) == json.loads(schema)
            assert subject in client.get("/registry/subjects").json()
            missing = client.get("/registry/subjects/no-such-subject-x/versions")
            assert (missing.status_code, missing.json()["error_code"]) == (404, 40401)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM labstream.schema_registry WHERE subject = %s", (subject,))
