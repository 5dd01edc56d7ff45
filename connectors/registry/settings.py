"""Where schemas are registered, and where lab-database ids start."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ID_OFFSET = 1_000_000_000


class RegistrySettings(BaseSettings):
    """Where schemas are registered."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    schema_registry_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LABSTREAM_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"),
        description="Confluent-compatible registry URL (SCHEMA_REGISTRY_URL or "
        "LABSTREAM_SCHEMA_REGISTRY_URL); unset: the lab database table.",
    )
    schema_registry_id_offset: int = Field(
        default=DEFAULT_ID_OFFSET,
        validation_alias=AliasChoices("LABSTREAM_SCHEMA_REGISTRY_ID_OFFSET"),
        description="First id the lab-database registry hands out "
        "(LABSTREAM_SCHEMA_REGISTRY_ID_OFFSET); far above the ids of registries that "
        "count from 1, so ids of two registries never overlap.",
    )
