"""Open psycopg 3 connections to the lab database with errors a human can act on."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg

from base.errors import ServiceUnavailable
from base.settings import service_settings

STACK_HINT = (
    "start the local stack with `labstream stack up` "
    "or point LABSTREAM_DATABASE_URL at a reachable PostgreSQL"
)


def mask_url(database_url: str) -> str:
    """The URL with its password replaced by `***`, safe to print and log."""
    parts = urlsplit(database_url)
    if not parts.password:
        return database_url
    userinfo = f"{parts.username}:***" if parts.username else ":***"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def resolve_url(database_url: str | None) -> str:
    return database_url or service_settings().database_url


def connect(
    database_url: str | None = None,
    *,
    autocommit: bool = False,
    application_name: str = "labstream",
    connect_timeout: int = 5,
) -> psycopg.Connection:
    """Connect to the lab database; `ServiceUnavailable` (URL masked) when it does not answer."""
    url = resolve_url(database_url)
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            application_name=application_name,
            connect_timeout=connect_timeout,
        )
    except psycopg.OperationalError as exc:
        reason = _first_line(exc)
        password = urlsplit(url).password
        if password:  # libpq may echo parts of the DSN back
            reason = reason.replace(password, "***")
        raise ServiceUnavailable(
            f"cannot connect to the lab database at {mask_url(url)}: {reason}",
            hint=STACK_HINT,
        ) from exc
