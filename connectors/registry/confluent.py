"""Any Confluent-compatible HTTP schema registry, via confluent-kafka's client."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connectors.exceptions import RegistryError, RegistryUnavailable, UnknownSchemaId
from connectors.registry.base import RegisteredSchema, schema_fingerprint

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403


class ConfluentSchemaRegistry:
    """`SchemaRegistry` over the Confluent REST API (`SCHEMA_REGISTRY_URL`)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0,
                 guard: Callable[[str, str], None] | None = None) -> None:
        """`guard(subject, url)` runs before a subject is registered (see guard.py)."""
        self.url = url
        self.guard = guard
        self._client = SchemaRegistryClient({"url": url, "timeout": timeout_s})
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}

    def _unavailable(self, exc: Exception) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"schema registry at {self.url} did not answer: {exc}",
            hint="check SCHEMA_REGISTRY_URL, or unset it to use the lab database registry",
        )

    def register(self, subject: str, schema_str: str) -> int:
        key = (subject, schema_fingerprint(schema_str))
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        if self.guard is not None:
            self.guard(subject, self.url)
        try:
            schema_id = self._client.register_schema(subject, Schema(schema_str, "AVRO"))
        except SchemaRegistryError as exc:
            raise RegistryError(
                f"schema registry refused the schema for subject {subject!r}: {exc.error_message}",
                hint="an incompatible change? check the subject's compatibility level",
            ) from exc
        except Exception as exc:  # requests/httpx transport errors
            raise self._unavailable(exc) from exc
        self._ids[key] = schema_id
        self._schemas[schema_id] = schema_str
        return schema_id

    def get_schema(self, schema_id: int) -> str:
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.error_code == SCHEMA_NOT_FOUND or exc.http_status_code == 404:
                raise UnknownSchemaId(
                    f"schema id {schema_id} is unknown to the registry at {self.url}",
                    hint="the record was written against another registry",
                ) from exc
            raise RegistryError(f"schema registry error for id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise self._unavailable(exc) from exc
        text = str(schema.schema_str)
        self._schemas[schema_id] = text
        return text

    def latest(self, subject: str) -> RegisteredSchema | None:
        try:
            registered = self._client.get_latest_version(subject)
        except SchemaRegistryError as exc:
            not_found = exc.error_code in (SUBJECT_NOT_FOUND, VERSION_NOT_FOUND)
            if not_found or exc.http_status_code == 404:
                return None
            raise RegistryError(f"schema registry error for subject {subject!r}: {exc}") from exc
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return RegisteredSchema(
            subject, int(registered.version or 0), int(registered.schema_id or 0),
            str(registered.schema.schema_str),
        )

    def close(self) -> None:
        close = getattr(self._client, "__exit__", None)
        if close is not None:
            close(None, None, None)
