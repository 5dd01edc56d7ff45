"""`labstream db`: apply migrations and show which are applied or pending."""

from __future__ import annotations

import json

import click

from base.db import mask_url, resolve_url
from labstream.db.migrate import migrate, migration_status


@click.group()
def db() -> None:
    """Lab database: migrations and status.

    Reads LABSTREAM_DATABASE_URL (default postgresql://lab:***@127.0.0.1:55432/lab).
    """


@db.command("migrate")
@click.option(
    "--database-url",
    envvar="LABSTREAM_DATABASE_URL",
    default=None,
    help="libpq URL of the lab database [env LABSTREAM_DATABASE_URL].",
)
def migrate_command(database_url: str | None) -> None:
    """Apply pending migrations, each in its own transaction."""
    applied = migrate(database_url)
    target = mask_url(resolve_url(database_url))
    if not applied:
        click.echo(f"up to date ({target})")
        return
    for filename in applied:
        click.echo(f"applied {filename}")
    click.echo(f"{len(applied)} migration(s) applied to {target}")


@db.command("status")
@click.option(
    "--database-url",
    envvar="LABSTREAM_DATABASE_URL",
    default=None,
    help="libpq URL of the lab database [env LABSTREAM_DATABASE_URL].",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status_command(database_url: str | None, as_json: bool) -> None:
    """Show applied and pending migrations."""
    status = migration_status(database_url)
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2))
        return
    click.echo(f"database: {mask_url(resolve_url(database_url))}")
    changed = {m.version for m in status.changed}
    for row in status.applied:
        when = row.applied_at.strftime("%Y-%m-%d %H:%M:%S%z") if row.applied_at else ""
        mark = "  CHANGED since applied" if row.version in changed else ""
        click.echo(f"  applied  {row.version:04d}_{row.name}  {when}{mark}")
    for row in status.unknown:
        click.echo(f"  applied  {row.version:04d}_{row.name}  (no local file)")
    for migration in status.pending:
        click.echo(f"  pending  {migration.filename}")
    if not status.pending:
        click.echo("up to date")
    else:
        click.echo(f"{len(status.pending)} pending: run `labstream db migrate`")
    if status.changed:
        click.echo(
            "changed after applying: "
            + ", ".join(m.filename for m in status.changed)
            + " (restore them and put changes in a new migration)"
        )
