"""Record bytes -> Python values: Confluent-framed Avro (schemas from any
Confluent-compatible registry by URL) or Kafka Connect JsonConverter JSON.

Both formats decode to the same values: Connect JSON's base64 bytes and Decimals
and its "NaN"/"Infinity" strings are converted as the Connect schema in the
record says, so code written against one format reads the other.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from typing import Any

import fastavro

from labstream_client.envelope import Value, typed

_FRAMING = struct.Struct(">bI")
_ACCEPT = "application/vnd.schemaregistry.v1+json, application/json"
_DECIMAL = "org.apache.kafka.connect.data.Decimal"


class DecodeError(ValueError):
    """A record could not be decoded; the message says why and what to check."""


class RegistryClient:
    """Writer schemas by id from a Confluent-compatible registry (`GET /schemas/ids/{id}`):
    labstream's own (`labstream registry serve`), Confluent, Apicurio, Karapace, ...

    Credentials may be given in the URL (`https://user:secret@host`). Schemas never
    change for an id, so each is fetched once per process.
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self._headers = {"Accept": _ACCEPT}
        if parts.username is not None:
            pair = f"{urllib.parse.unquote(parts.username)}:" \
                   f"{urllib.parse.unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            host = parts.hostname or ""
            parts = parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))
        self.url = urllib.parse.urlunsplit(parts).rstrip("/")
        self.timeout_s = timeout_s
        self._parsed: dict[int, Any] = {}
        self._lock = threading.Lock()

    def fetch(self, schema_id: int) -> str:
        request = urllib.request.Request(f"{self.url}/schemas/ids/{schema_id}",
                                         headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return str(json.loads(response.read())["schema"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise DecodeError(
                    f"schema id {schema_id} is not in the registry at {self.url}: the record "
                    "was written against another registry (labstream's lab-database ids "
                    "start at 1000000000); point registry_url at the one the connector used"
                ) from exc
            raise DecodeError(f"registry {self.url} answered {exc.code} for schema id "
                              f"{schema_id}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DecodeError(f"registry {self.url} did not answer: {exc}") from exc

    def parsed(self, schema_id: int) -> Any:
        found = self._parsed.get(schema_id)
        if found is None:
            with self._lock:
                found = self._parsed.get(schema_id)
                if found is None:
                    found = fastavro.parse_schema(json.loads(self.fetch(schema_id)))
                    self._parsed[schema_id] = found
        return found


def from_connect_json(schema: dict[str, Any] | None, value: Any) -> Any:
    """A JsonConverter payload as the values Avro decoding gives (Decimal, bytes, floats)."""
    if value is None or not schema:
        return value
    kind = schema.get("type")
    if kind == "struct":
        return {f["field"]: from_connect_json(f, value.get(f["field"]))
                for f in schema.get("fields", [])}
    if kind == "array":
        return [from_connect_json(schema.get("items"), item) for item in value]
    if kind == "map":
        keys, values = schema.get("keys"), schema.get("values")
        pairs = value.items() if isinstance(value, dict) else value  # non-string keys: pairs
        return {from_connect_json(keys, k): from_connect_json(values, v) for k, v in pairs}
    if kind == "bytes" and isinstance(value, str):
        raw = base64.b64decode(value)
        if schema.get("name") == _DECIMAL:
            scale = int((schema.get("parameters") or {}).get("scale", 0))
            return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale)
        return raw
    if kind in ("float", "float32", "float64", "double") and isinstance(value, str):
        return float(value)  # Jackson writes NaN / Infinity / -Infinity as strings
    return value


class Decoder:
    """Decode labstream's record keys and values, whichever format the connector used.

    `registry_url` is needed for Avro (the default output); JSON records carry their
    schema. `value()` gives typed objects (`ChangeEvent`, `TransactionMarker`),
    `raw()` the plain dict.
    """

    def __init__(self, registry_url: str | None = None, *,
                 registry: RegistryClient | None = None) -> None:
        self.registry = registry or (RegistryClient(registry_url) if registry_url else None)

    def raw(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) >= 5 and data[0] == 0:
            return self._avro(data)
        if data[:1] == b"{":
            return self._json(data)
        raise DecodeError(
            "record is neither Confluent-framed Avro (magic byte 0) nor JsonConverter JSON: "
            "was it written by labstream cdc?")

    def value(self, data: bytes | None) -> Value:
        return typed(self.raw(data))

    def key(self, data: bytes | None) -> dict[str, Any] | None:
        decoded = self.raw(data)
        return decoded if isinstance(decoded, dict) else None

    def _avro(self, data: bytes) -> Any:
        schema_id = _FRAMING.unpack_from(data)[1]
        if self.registry is None:
            raise DecodeError(f"record is Avro with schema id {schema_id}: pass registry_url "
                              "(labstream registry serve, or the connector's SCHEMA_REGISTRY_URL)")
        try:
            return fastavro.schemaless_reader(io.BytesIO(data[5:]),
                                              self.registry.parsed(schema_id), None)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"Avro body does not match schema id {schema_id}: {exc}") from exc

    @staticmethod
    def _json(data: bytes) -> Any:
        try:
            document = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DecodeError(f"record is not valid JSON: {exc}") from exc
        if isinstance(document, dict) and set(document) == {"schema", "payload"}:
            return from_connect_json(document["schema"], document["payload"])
        return document  # schemas.enable=false: the payload alone
