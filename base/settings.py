"""Settings shared by every labstream process, read from the environment.

Each component adds its own settings class next to its code; these are the
addresses of the services every component talks to. Names follow the
`LABSTREAM_` prefix; `--help` of each command lists the ones it reads.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServiceSettings(BaseSettings):
    """Where the lab database and the Kafka cluster are."""

    model_config = SettingsConfigDict(env_prefix="LABSTREAM_", frozen=True, extra="ignore")

    database_url: str = Field(
        default="postgresql://lab:lab@127.0.0.1:55432/lab",
        description="libpq URL of the lab database (LABSTREAM_DATABASE_URL).",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:59092",
        description="Kafka bootstrap servers, comma separated (LABSTREAM_KAFKA_BOOTSTRAP_SERVERS).",
    )
    state_dir: Path = Field(
        default=REPO_ROOT / ".state",
        description="Folder for the local stack's data, logs and jars (LABSTREAM_STATE_DIR).",
    )


@lru_cache(maxsize=1)
def service_settings() -> ServiceSettings:
    return ServiceSettings()
