"""`labstream api` settings (LABSTREAM_API_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABSTREAM_API_", frozen=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on.")
    pool_min_size: int = Field(default=1, ge=0, description="Lab DB connections kept open.")
    pool_max_size: int = Field(default=8, ge=1, description="Most lab DB connections at once.")
