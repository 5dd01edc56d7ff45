"""Settings of the local stack: ports come from the service URLs, the rest from here.

The PostgreSQL port is the port of `LABSTREAM_DATABASE_URL` and the Kafka broker
port is the port of the first `LABSTREAM_KAFKA_BOOTSTRAP_SERVERS` entry, so the
stack always listens where every other component will look.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.errors import ConfigError
from base.settings import ServiceSettings, service_settings

DATABASE_URL_ENV = "LABSTREAM_DATABASE_URL"
KAFKA_BOOTSTRAP_ENV = "LABSTREAM_KAFKA_BOOTSTRAP_SERVERS"
CONTROLLER_PORT_ENV = "LABSTREAM_STACK_KAFKA_CONTROLLER_PORT"


class StackSettings(BaseSettings):
    """Knobs of `labstream stack` (prefix LABSTREAM_STACK_)."""

    model_config = SettingsConfigDict(env_prefix="LABSTREAM_STACK_", frozen=True, extra="ignore")

    kafka_controller_port: int = Field(
        default=59093, description=f"KRaft controller port ({CONTROLLER_PORT_ENV})."
    )
    kafka_heap: str = Field(
        default="768m", description="Kafka JVM heap, -Xmx (LABSTREAM_STACK_KAFKA_HEAP)."
    )
    kafka_version: str | None = Field(
        default=None,
        description=(
            "Override the Kafka version pinned in stack/kafka/pom.xml, for trying another "
            "release (LABSTREAM_STACK_KAFKA_VERSION)."
        ),
    )
    start_timeout_s: float = Field(
        default=90.0,
        description="Seconds `stack up` waits for each service (LABSTREAM_STACK_START_TIMEOUT_S).",
    )
    pg_data_root: Path = Field(
        default=Path("/var/lib/labstream"),
        description=(
            "Where the PostgreSQL data lives when the state folder is not reachable by the "
            "postgres OS user (LABSTREAM_STACK_PG_DATA_ROOT)."
        ),
    )


@lru_cache(maxsize=1)
def stack_settings() -> StackSettings:
    return StackSettings()


def pg_address(settings: ServiceSettings | None = None) -> tuple[str, int]:
    url = urlsplit((settings or service_settings()).database_url)
    try:
        port = url.port or 5432
    except ValueError as exc:
        raise ConfigError(
            f"{DATABASE_URL_ENV} has an invalid port: {exc}",
            hint=f"set {DATABASE_URL_ENV}=postgresql://lab:lab@127.0.0.1:55432/lab",
        ) from exc
    return url.hostname or "127.0.0.1", port


def kafka_address(settings: ServiceSettings | None = None) -> tuple[str, int]:
    first = (settings or service_settings()).kafka_bootstrap_servers.split(",")[0].strip()
    host, _, port_text = first.rpartition(":")
    if not port_text.isdigit():
        raise ConfigError(
            f"{KAFKA_BOOTSTRAP_ENV}={first!r} has no port",
            hint=f"set {KAFKA_BOOTSTRAP_ENV}=127.0.0.1:59092",
        )
    return host or "127.0.0.1", int(port_text)
