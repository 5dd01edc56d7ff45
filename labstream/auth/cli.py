"""`labstream tokens create|list|revoke`: API tokens for the lab API and console."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import click
import psycopg

from base.errors import ConfigError
from labstream.auth.tokens import Role


@contextmanager
def _connect() -> Iterator[psycopg.Connection]:
    from base.db import connect, mask_url, resolve_url

    with connect() as conn:
        try:
            yield conn
        except psycopg.errors.UndefinedTable as exc:
            raise ConfigError(
                f"{mask_url(resolve_url(None))} has no API token tables (migration 0008)",
                hint="labstream db migrate (is LABSTREAM_DATABASE_URL the lab DB?)") from exc


@click.group("tokens")
def tokens() -> None:
    """API tokens: each bound to a role and (except operator) one tenant.

    \b
    scientist  read and write its tenant's experiments, jobs, logs, traces
    viewer     read its tenant's data
    operator   read every tenant's data (on-call); every request is audited
               in labstream.operator_audit
    """


@tokens.command("create")
@click.option("--role", type=click.Choice([r.value for r in Role]), default="scientist",
              show_default=True, help="What the token may do.")
@click.option("--tenant", default=None, help="The tenant it is bound to (not for operator).")
@click.option("--name", required=True, help="Who or what uses it, e.g. ada@lab or ci-bot.")
@click.option("--expires-in-days", type=click.IntRange(min=1), default=None,
              help="Refused after this many days (default: until revoked).")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its row as JSON.")
def create(role: str, tenant: str | None, name: str, expires_in_days: int | None,
           as_json: bool) -> None:
    """Make a token and print it ONCE: only a hash of it is stored."""
    from labstream.auth.tokens import create_token

    expires = timedelta(days=expires_in_days) if expires_in_days else None
    with _connect() as conn:
        token, row = create_token(conn, role=Role(role), tenant_id=tenant, name=name,
                                  expires_in=expires)
    if as_json:
        click.echo(json.dumps({"token": token, **row.public()}, default=str))
        return
    click.echo(token)
    scope = f"tenant {tenant}" if tenant else "every tenant (audited)"
    click.echo(f"# {role} token {row.id} for {scope}; shown once, store it now. Use it as "
               "`Authorization: Bearer <token>` or paste it into the console's sign-in.",
               err=True)


@tokens.command("list")
@click.option("--tenant", default=None, help="Only this tenant's tokens.")
@click.option("--json", "as_json", is_flag=True)
def list_(tenant: str | None, as_json: bool) -> None:
    """List tokens (id, role, tenant, dates); secrets are never shown again."""
    from labstream.auth.tokens import list_tokens

    with _connect() as conn:
        rows = list_tokens(conn, tenant_id=tenant)
    if as_json:
        click.echo(json.dumps([row.public() for row in rows], default=str))
        return
    for row in rows:
        state = "revoked" if row.revoked_at else "active"
        click.echo(f"{row.id}  {row.role:<9}  {row.tenant_id or '*':<20}  {state:<7}  "
                   f"{row.name}  last used {row.last_used_at or 'never'}")


@tokens.command("revoke")
@click.argument("token_id")
def revoke(token_id: str) -> None:
    """Revoke a token by its id (or the token itself); the API refuses it within seconds."""
    from labstream.api.settings import ApiSettings
    from labstream.auth.tokens import revoke_token

    with _connect() as conn:
        row = revoke_token(conn, token_id)
    click.echo(f"revoked {row.id} ({row.role}, {row.tenant_id or 'every tenant'}); the API "
               f"refuses it within {ApiSettings().auth_cache_s:g}s")
