"""`labstream registry serve`: the lab-database registry for consumers outside labstream."""

from __future__ import annotations

import click
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistryServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABSTREAM_REGISTRY_", frozen=True,
                                      extra="ignore")

    host: str = Field(default="127.0.0.1", description="Listen address (LABSTREAM_REGISTRY_HOST).")
    port: int = Field(default=8081, ge=0, le=65535,
                      description="Listen port (LABSTREAM_REGISTRY_PORT); 8081 as Confluent's.")
    read_only: bool = Field(default=False,
                            description="Refuse writes (LABSTREAM_REGISTRY_READ_ONLY).")


@click.group("registry")
def registry() -> None:
    """The schema registry in the lab database, in the Confluent REST shape."""


@registry.command("serve")
@click.option("--host", default=None, help="Listen address (LABSTREAM_REGISTRY_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (LABSTREAM_REGISTRY_PORT, 8081).")
@click.option("--read-only", is_flag=True, default=None,
              help="Only reads, lookups and compatibility tests; writes get 42205 "
              "(LABSTREAM_REGISTRY_READ_ONLY). The connector registers through the database.")
def serve(host: str | None, port: int | None, read_only: bool | None) -> None:
    """Serve the lab-database registry over HTTP for stock Kafka clients.

    Point `schema.registry.url` of confluent-kafka's AvroDeserializer (or Java's
    KafkaAvroDeserializer) here to decode labstream's Avro records. Schemas are read
    from LABSTREAM_DATABASE_URL; new versions must pass the subject's compatibility
    level (BACKWARD unless set with PUT /config).
    """
    import uvicorn

    from base.db import resolve_url
    from connectors.registry.server import create_registry_app

    settings = RegistryServerSettings()
    uvicorn.run(
        create_registry_app(database_url=resolve_url(None),
                            read_only=settings.read_only if read_only is None else read_only),
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_config=None,  # keep labstream's key=value logging
    )
