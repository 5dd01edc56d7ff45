"""ConfluentSchemaRegistry against a tiny in-test HTTP fake of the registry REST API.

This is a unit test with a stub: the fake listens on 127.0.0.1 only, answers the four
endpoints the client uses, and stops with the test. The database registry is tested
against the real lab database in tests/integration/test_codec_registry_db.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

from connectors.exceptions import RegistryUnavailable, UnknownSchemaId
from connectors.registry import RegistrySettings, registry_from_settings
from connectors.registry.base import schema_fingerprint
from connectors.registry.confluent import ConfluentSchemaRegistry
from connectors.registry.db import DbSchemaRegistry


class FakeRegistry:
    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[tuple[int, str]]] = {}  # subject -> [(id, fingerprint)]
        self.requests: list[tuple[str, str]] = []

    def register(self, subject: str, schema: str) -> dict:
        fingerprint = schema_fingerprint(schema)
        versions = self.subjects.setdefault(subject, [])
        for version, (schema_id, known) in enumerate(versions, 1):
            if known == fingerprint:
                return {"id": schema_id, "subject": subject, "version": version}
        schema_id = next((i for i, s in self.schemas.items()
                          if schema_fingerprint(s) == fingerprint), len(self.schemas) + 1)
        self.schemas[schema_id] = schema
        versions.append((schema_id, fingerprint))
        return {"id": schema_id, "subject": subject, "version": len(versions)}


def make_handler(fake: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            path = urlsplit(self.path).path.strip("/").split("/")
            fake.requests.append(("POST", self.path))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if len(path) == 3 and path[0] == "subjects" and path[2] == "versions":
                self.reply(200, fake.register(unquote(path[1]), body["schema"]))
            else:
                self.reply(404, {"error_code": 404, "message": "not found"})

        def do_GET(self) -> None:
            path = urlsplit(self.path).path.strip("/").split("/")
            fake.requests.append(("GET", self.path))
            if path[:2] == ["schemas", "ids"]:
                schema_id = int(path[2])
                if schema_id in fake.schemas:
                    self.reply(200, {"schema": fake.schemas[schema_id]})
                else:
                    self.reply(404, {"error_code": 40403, "message": "Schema not found"})
            elif path[0] == "subjects" and path[2:] == ["versions", "latest"]:
                versions = fake.subjects.get(unquote(path[1]))
                if not versions:
                    self.reply(404, {"error_code": 40401, "message": "Subject not found"})
                    return
                schema_id = versions[-1][0]
                self.reply(200, {"subject": unquote(path[1]), "id": schema_id,
                                 "version": len(versions), "schema": fake.schemas[schema_id]})
            else:
                self.reply(404, {"error_code": 404, "message": "not found"})

    return Handler


@pytest.fixture
def fake_registry() -> Iterator[tuple[FakeRegistry, str]]:
    fake = FakeRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


SCHEMA_V1 = json.dumps({"type": "record", "name": "Value", "namespace": "lab.public.t",
                        "fields": [{"name": "id", "type": "int"}]})
SCHEMA_V2 = json.dumps({"type": "record", "name": "Value", "namespace": "lab.public.t",
                        "fields": [{"name": "id", "type": "int"},
                                   {"name": "note", "type": ["null", "string"], "default": None}]})


def test_register_is_idempotent_and_cached(fake_registry) -> None:
    fake, url = fake_registry
    registry = ConfluentSchemaRegistry(url)
    first = registry.register("lab.public.t-value", SCHEMA_V1)
    # Same schema with other whitespace/key order: same id, and no second HTTP call.
    reordered = json.dumps(json.loads(SCHEMA_V1), indent=2, sort_keys=True)
    assert registry.register("lab.public.t-value", reordered) == first
    posts = [r for r in fake.requests if r[0] == "POST"]
    assert len(posts) == 1
    assert registry.get_schema(first) == SCHEMA_V1


def test_evolved_schema_gets_a_new_version(fake_registry) -> None:
    _fake, url = fake_registry
    registry = ConfluentSchemaRegistry(url)
    assert registry.latest("lab.public.t-value") is None
    v1 = registry.register("lab.public.t-value", SCHEMA_V1)
    v2 = registry.register("lab.public.t-value", SCHEMA_V2)
    assert v1 != v2
    latest = ConfluentSchemaRegistry(url).latest("lab.public.t-value")
    assert latest is not None
    assert (latest.version, latest.schema_id) == (2, v2)
    assert json.loads(latest.schema) == json.loads(SCHEMA_V2)


def test_get_schema_fetches_unknown_ids_over_http(fake_registry) -> None:
    fake, url = fake_registry
    schema_id = fake.register("other-value", SCHEMA_V2)["id"]
    assert json.loads(ConfluentSchemaRegistry(url).get_schema(schema_id)) == json.loads(SCHEMA_V2)
    with pytest.raises(UnknownSchemaId):
        ConfluentSchemaRegistry(url).get_schema(999)


def test_unreachable_registry_is_registry_unavailable() -> None:
    registry = ConfluentSchemaRegistry("http://127.0.0.1:9", timeout_s=1)  # discard port
    with pytest.raises(RegistryUnavailable):
        registry.register("x-value", SCHEMA_V1)


def test_registry_from_settings_prefers_the_http_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEMA_REGISTRY_URL", raising=False)
    monkeypatch.delenv("LABSTREAM_SCHEMA_REGISTRY_URL", raising=False)
    assert isinstance(registry_from_settings(), DbSchemaRegistry)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081")
    assert isinstance(registry_from_settings(), ConfluentSchemaRegistry)
    monkeypatch.delenv("SCHEMA_REGISTRY_URL")
    monkeypatch.setenv("LABSTREAM_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8082")
    chosen = registry_from_settings()
    assert isinstance(chosen, ConfluentSchemaRegistry) and chosen.url.endswith(":8082")
    assert RegistrySettings().schema_registry_url == "http://127.0.0.1:8082"


def test_confluent_clients_read_our_records_and_we_read_theirs(fake_registry) -> None:
    """Interop: confluent-kafka's own Avro serde against our framing (via the fake registry)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentDeserializer
    from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from connectors.envelope import SourceInfo, build_change_event
    from connectors.pgoutput import Relation, RelationColumn
    from connectors.schema import TableSchema
    from connectors.serde import AvroDeserializer, AvroSerializer

    _fake, url = fake_registry
    table = TableSchema.from_relation(
        Relation(1, "public", "t", "d", (RelationColumn(True, "id", 23, -1),
                                         RelationColumn(False, "note", 25, -1))),
        topic_prefix="lab",
    )
    source = SourceInfo(name="lab", db="lab", schema="public", table="t", ts_us=5, lsn=9)
    event = build_change_event(table, "c", None, {"id": 7, "note": "é"}, source, None, 1)
    ours = AvroSerializer(ConfluentSchemaRegistry(url))
    client = SchemaRegistryClient({"url": url})
    context = SerializationContext(table.topic, MessageField.VALUE)

    theirs_read = ConfluentDeserializer(client)(ours.value_bytes(event), context)
    assert theirs_read["after"] == {"id": 7, "note": "é"}
    assert theirs_read["source"]["lsn"] == 9 and theirs_read["op"] == "c"

    their_bytes = ConfluentSerializer(
        client, json.dumps(table.value_avro), conf={"auto.register.schemas": True}
    )(event.value, context)
    assert their_bytes[0] == 0
    assert AvroDeserializer(ConfluentSchemaRegistry(url)).decode(their_bytes) == event.value
