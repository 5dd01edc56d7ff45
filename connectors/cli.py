"""`labstream cdc`: run the CDC connector, show its status, reset it."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from connectors.source.config import CdcSettings, settings_reference


def _settings_epilog() -> str:
    lines = ["\b", "Settings (environment; docs/connector.md explains each):"]
    for name, default, _ in settings_reference():
        lines.append(f"  {name}" + (f" [{default}]" if default else ""))
    return "\n".join(lines)


@click.group(invoke_without_command=True)
@click.pass_context
def cdc(ctx: click.Context) -> None:
    """CDC: lab database changes to Kafka as Debezium-compatible records.

    `labstream cdc` alone runs the connector (same as `labstream cdc run`).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@cdc.command(epilog=_settings_epilog())
def run() -> None:
    """Run the connector until SIGTERM/SIGINT (then flush, confirm, exit 0)."""
    from connectors.source.connector import CdcConnector
    from tracing.setup import configure_tracing

    configure_tracing("labstream-cdc")
    connector = CdcConnector(CdcSettings())
    from connectors.source import metrics  # /metrics, /healthz, /readyz (LABSTREAM_METRICS_PORT)

    metrics.start(connector, connector.settings, connector.database_url)

    def stop(_signum: int, _frame: Any) -> None:
        connector.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        connector.run()
    finally:
        from tracing.setup import shutdown_tracing

        shutdown_tracing()


@cdc.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(as_json: bool) -> None:
    """Slot active/inactive, confirmed LSN, lag in bytes and seconds, snapshot state."""
    from base.db import connect
    from connectors.source.status import connector_status, format_status

    with connect() as conn:
        result = connector_status(conn, CdcSettings())
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(format_status(result))


@cdc.command()
@click.option("--yes", is_flag=True, help="Really drop the slot(s) and the offsets.")
def reset(yes: bool) -> None:
    """Drop the connector's replication slot(s) and offsets: the next run snapshots anew."""
    from base.db import connect
    from connectors.source.status import reset_connector

    if not yes:
        click.echo("this drops the replication slot and offsets; re-run with --yes", err=True)
        sys.exit(2)
    with connect() as conn:
        done = reset_connector(conn, CdcSettings())
    for line in done or ["nothing to reset"]:
        click.echo(line)
