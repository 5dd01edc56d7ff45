"""The schema registry contract and what every implementation shares."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: str


@runtime_checkable
class SchemaRegistry(Protocol):
    """Avro schemas by subject (`<topic>-key`, `<topic>-value`) and by numeric id."""

    def register(self, subject: str, schema_str: str) -> int:
        """The id of `schema_str` under `subject`; registering the same schema again is a no-op."""
        ...

    def get_schema(self, schema_id: int) -> str:
        """The schema text for an id (raises `UnknownSchemaId`)."""
        ...

    def latest(self, subject: str) -> RegisteredSchema | None:
        """The newest version registered under `subject`, or None."""
        ...


def canonical_schema(schema_str: str) -> str:
    """Whitespace- and key-order-independent text, so equal schemas fingerprint equally."""
    return json.dumps(json.loads(schema_str), sort_keys=True, separators=(",", ":"))


def schema_fingerprint(schema_str: str) -> str:
    return hashlib.sha256(canonical_schema(schema_str).encode()).hexdigest()
