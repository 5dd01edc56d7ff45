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
    pool_timeout_s: float = Field(default=10.0, gt=0, description=(
        "Seconds a request waits for a lab DB connection before answering 503."))
    auth_cache_s: float = Field(default=5.0, ge=0, le=60, description=(
        "Seconds a verified token is trusted without looking at its row again: a revoked "
        "token is refused at most this long after `labstream tokens revoke`."))
    rate_per_s: float = Field(default=20.0, gt=0, description=(
        "Requests per second each credential may make on average (token bucket)."))
    rate_burst: int = Field(default=60, ge=1, description=(
        "Requests a credential may make at once before the rate applies."))
    auth_failures_per_s: float = Field(default=1.0, gt=0, description=(
        "Failed authentications per second a client address may make on average (429 "
        "beyond): behind a proxy, set FORWARDED_ALLOW_IPS so the address is the client's."))
    auth_failure_burst: int = Field(default=30, ge=1, description=(
        "Failed authentications a client address may make at once."))
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=512 * 1024, description=(
        "Largest request body (413 above). Each experiment becomes one Kafka record "
        "holding the row before and after a change, so a row must stay well under "
        "half of Kafka's 1 MiB message.max.bytes."))
    oidc_issuer: str | None = Field(default=None, description=(
        "OpenID Connect issuer whose JWTs are accepted as bearer tokens (`iss`)."))
    oidc_audience: str | None = Field(default=None, description="Required `aud` of OIDC JWTs.")
    oidc_jwks_url: str | None = Field(default=None, description=(
        "The issuer's JWKS URL (default: <issuer>/.well-known/jwks.json)."))
    oidc_tenant_claim: str = Field(default="lab_tenant", description=(
        "JWT claim holding the caller's tenant."))
    oidc_role_claim: str = Field(default="lab_role", description=(
        "JWT claim holding the caller's role (scientist, viewer, operator)."))
