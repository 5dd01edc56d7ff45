"""Schema registries: a Confluent-compatible HTTP registry, or a table in the lab database.

`registry_from_settings()` picks the HTTP registry when `SCHEMA_REGISTRY_URL` (or
`LABSTREAM_SCHEMA_REGISTRY_URL`) is set, otherwise `labstream.schema_registry` in the
lab database, so nothing extra has to run. Both cache lookups in process.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.registry.base import (
    RegisteredSchema,
    SchemaRegistry,
    canonical_schema,
    schema_fingerprint,
)
from connectors.registry.db import DbSchemaRegistry

__all__ = [
    "DbSchemaRegistry",
    "RegisteredSchema",
    "RegistrySettings",
    "SchemaRegistry",
    "canonical_schema",
    "registry_from_settings",
    "schema_fingerprint",
]


class RegistrySettings(BaseSettings):
    """Where schemas are registered."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    schema_registry_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LABSTREAM_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"),
        description="Confluent-compatible registry URL (SCHEMA_REGISTRY_URL or "
        "LABSTREAM_SCHEMA_REGISTRY_URL); unset: the lab database table.",
    )


def registry_from_settings(
    settings: RegistrySettings | None = None, *, database_url: str | None = None
) -> SchemaRegistry:
    chosen = settings or RegistrySettings()
    if chosen.schema_registry_url:
        # imported here: confluent-kafka's registry client pulls in authlib & co.
        from connectors.registry.confluent import ConfluentSchemaRegistry

        return ConfluentSchemaRegistry(chosen.schema_registry_url)
    return DbSchemaRegistry(database_url)
