"""Schema registries: a Confluent-compatible HTTP registry, or a table in the lab database.

`registry_from_settings()` picks the HTTP registry when `SCHEMA_REGISTRY_URL` (or
`LABSTREAM_SCHEMA_REGISTRY_URL`) is set, otherwise `labstream.schema_registry` in the
lab database, so nothing extra has to run. Both cache lookups in process.
`labstream registry serve` (connectors/registry/server.py) serves the lab-database
registry in the Confluent REST shape, for consumers outside labstream.
"""

from __future__ import annotations

from connectors.registry.base import (
    RegisteredSchema,
    SchemaRegistry,
    canonical_schema,
    schema_fingerprint,
)
from connectors.registry.db import DbSchemaRegistry
from connectors.registry.settings import RegistrySettings

__all__ = [
    "DbSchemaRegistry",
    "RegisteredSchema",
    "RegistrySettings",
    "SchemaRegistry",
    "canonical_schema",
    "registry_from_settings",
    "schema_fingerprint",
]


def registry_from_settings(
    settings: RegistrySettings | None = None, *, database_url: str | None = None
) -> SchemaRegistry:
    chosen = settings or RegistrySettings()
    if chosen.schema_registry_url:
        # imported here: confluent-kafka's registry client pulls in authlib & co.
        from connectors.registry.confluent import ConfluentSchemaRegistry
        from connectors.registry.guard import ExternalRegistryGuard

        # the lab database remembers the subject, so no topic mixes two registries' ids
        return ConfluentSchemaRegistry(chosen.schema_registry_url,
                                       guard=ExternalRegistryGuard(database_url))
    return DbSchemaRegistry(database_url, id_offset=chosen.schema_registry_id_offset)
