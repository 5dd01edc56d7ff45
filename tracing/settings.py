"""Tracing configuration: `LABSTREAM_TRACING_*`, `HONEYCOMB_*` and the standard `OTEL_*`.

The OTLP exporter reads `OTEL_EXPORTER_OTLP_*` itself (endpoint, headers,
timeout, compression) and the SDK reads `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` and
`OTEL_RESOURCE_ATTRIBUTES`; only what is ours is declared here.
"""

from __future__ import annotations

import os
import re

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tracing.exceptions import TracingConfigError

EXPORTER_NAMES = ("db", "otlp", "honeycomb", "console")
HONEYCOMB_ENDPOINTS = {
    "us": "https://api.honeycomb.io",
    "eu": "https://api.eu1.honeycomb.io",
}
# Honeycomb classic keys are 32 hex digits; classic ingest keys are `hc?ic_` + 58 chars.
# Only those need `x-honeycomb-dataset`: environment keys route by service.name.
_CLASSIC_INGEST_KEY = re.compile(r"^hc[a-z]ic_[0-9a-z]{58}$")


def is_classic_honeycomb_key(api_key: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{32}", api_key)) or bool(_CLASSIC_INGEST_KEY.match(api_key))


class TracingSettings(BaseSettings):
    """Where spans go (LABSTREAM_TRACING_*)."""

    model_config = SettingsConfigDict(
        env_prefix="LABSTREAM_TRACING_", frozen=True, extra="ignore", populate_by_name=True
    )

    enabled: bool = Field(
        default=True,
        description="false turns tracing off (so does OTEL_SDK_DISABLED=true).",
    )
    exporters: str = Field(
        default="auto",
        description=(
            "Comma-separated exporters: db, otlp, honeycomb, console, none. 'auto' = db, plus "
            "honeycomb when HONEYCOMB_API_KEY is set, plus otlp when OTEL_EXPORTER_OTLP_"
            "(TRACES_)ENDPOINT is set."
        ),
    )
    honeycomb_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("LABSTREAM_TRACING_HONEYCOMB_API_KEY", "HONEYCOMB_API_KEY"),
        description="Honeycomb ingest key, sent as x-honeycomb-team (HONEYCOMB_API_KEY).",
    )
    honeycomb_region: str = Field(
        default="us",
        validation_alias=AliasChoices("LABSTREAM_TRACING_HONEYCOMB_REGION", "HONEYCOMB_REGION"),
        description="us (api.honeycomb.io) or eu (api.eu1.honeycomb.io).",
    )
    honeycomb_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "LABSTREAM_TRACING_HONEYCOMB_ENDPOINT", "HONEYCOMB_API_ENDPOINT"
        ),
        description="Overrides the region's base URL (a proxy, Refinery).",
    )
    honeycomb_dataset: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LABSTREAM_TRACING_HONEYCOMB_DATASET", "HONEYCOMB_DATASET"),
        description="Dataset for classic keys only (default: the service name).",
    )
    beeline_headers: bool = Field(
        default=False,
        description=(
            "true: what labstream sends also carries X-Honeycomb-Trace (Kafka headers, API "
            "responses; HONEYCOMB_TRACE in job environments), so a beeline service downstream "
            "continues the trace instead of starting a new one."
        ),
    )
    database_url: str | None = Field(
        default=None,
        description="Lab DB for the span store (default: LABSTREAM_DATABASE_URL).",
    )

    def is_enabled(self) -> bool:
        sdk_disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        return self.enabled and not sdk_disabled

    def exporter_names(self) -> list[str]:
        """The exporters to build, validated; 'auto' resolved from the environment."""
        requested = [name.strip().lower() for name in self.exporters.split(",") if name.strip()]
        if requested in ([], ["auto"]):
            return self._auto_exporters()
        if requested == ["none"]:
            return []
        unknown = [name for name in requested if name not in EXPORTER_NAMES]
        if unknown:
            raise TracingConfigError(
                f"LABSTREAM_TRACING_EXPORTERS has unknown exporter(s) {', '.join(unknown)}",
                hint=f"use a comma-separated list of {', '.join(EXPORTER_NAMES)} (or auto, none)",
            )
        return list(dict.fromkeys(requested))

    def _auto_exporters(self) -> list[str]:
        names = ["db"]
        if self.honeycomb_api_key is not None:
            names.append("honeycomb")
        if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        ):
            names.append("otlp")
        return names

    def honeycomb_traces_url(self) -> str:
        base = self.honeycomb_endpoint
        if not base:
            region = self.honeycomb_region.strip().lower()
            if region not in HONEYCOMB_ENDPOINTS:
                raise TracingConfigError(
                    f"HONEYCOMB_REGION={self.honeycomb_region!r} is not a Honeycomb region",
                    hint="set HONEYCOMB_REGION to us or eu",
                )
            base = HONEYCOMB_ENDPOINTS[region]
        return base.rstrip("/") + "/v1/traces"

    def honeycomb_headers(self, service_name: str) -> dict[str, str]:
        if self.honeycomb_api_key is None:
            raise TracingConfigError(
                "the honeycomb exporter needs an API key",
                hint="set HONEYCOMB_API_KEY (or drop honeycomb from LABSTREAM_TRACING_EXPORTERS)",
            )
        api_key = self.honeycomb_api_key.get_secret_value()
        headers = {"x-honeycomb-team": api_key}
        if is_classic_honeycomb_key(api_key):
            headers["x-honeycomb-dataset"] = self.honeycomb_dataset or service_name
        return headers
