"""Replay settings (LABSTREAM_REPLAY_*): how often a re-drive records its progress."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReplaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABSTREAM_REPLAY_", frozen=True, extra="ignore")

    batch_size: int = Field(
        default=200,
        gt=0,
        description="Records per progress checkpoint of a re-drive (LABSTREAM_REPLAY_BATCH_SIZE).",
    )
    batch_seconds: float = Field(
        default=1.0,
        gt=0,
        description="At most this long between checkpoints (LABSTREAM_REPLAY_BATCH_SECONDS).",
    )
