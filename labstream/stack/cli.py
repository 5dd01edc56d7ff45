"""`labstream stack up | down [--purge] | status [--json] | logs [postgres|kafka]`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from labstream.stack import control, procs


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def stack() -> None:
    """The local stack: PostgreSQL (127.0.0.1:55432) and Kafka (127.0.0.1:59092).

    Everything it writes lives under LABSTREAM_STATE_DIR (default .state/).
    Ports follow LABSTREAM_DATABASE_URL and LABSTREAM_KAFKA_BOOTSTRAP_SERVERS;
    LABSTREAM_STACK_KAFKA_CONTROLLER_PORT, LABSTREAM_STACK_KAFKA_HEAP and
    LABSTREAM_STACK_START_TIMEOUT_S tune the rest.
    """


@stack.command()
def up() -> None:
    """Start what is not running and wait until both services really answer."""
    _print_table(control.up(report=_say))


@stack.command()
@click.option("--purge", is_flag=True, help="Also delete all data, logs and jars of the stack.")
def down(purge: bool) -> None:
    """Stop the processes `up` started (by pid); nothing else."""
    control.down(purge=purge, report=_say)


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def status(as_json: bool) -> None:
    """What runs on which port, with pids. Exit code 1 when a service is down."""
    statuses = control.status()
    if as_json:
        click.echo(json.dumps(control.status_dicts(statuses), indent=2))
    else:
        _print_table(statuses)
    if not all(item.running for item in statuses):
        raise SystemExit(1)


def _print_table(statuses: list[control.ServiceStatus]) -> None:
    for item in statuses:
        state = f"up    pid {item.pid}" if item.running else "down"
        line = f"{item.name:<9} {state:<16} {item.address:<17}"
        if item.port_holder:
            line += f" port taken by {item.port_holder}"
        elif item.running:
            line += f" log {item.log}"
        click.echo(line)


@stack.command()
@click.argument("service", type=click.Choice(["postgres", "kafka"]), required=False)
@click.option("-n", "lines", default=40, show_default=True, help="Lines to show from the end.")
@click.option("-f", "follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
def logs(service: str | None, lines: int, follow: bool) -> None:
    """Show the end of the PostgreSQL and/or Kafka log."""
    services = [service] if service else ["postgres", "kafka"]
    files = [control.log_file(name) for name in services]
    for name, path in zip(services, files, strict=True):
        if len(files) > 1:
            click.echo(f"==> {name}: {path} <==")
        click.echo(procs.tail_lines(path, lines) or f"(no log yet at {path})")
    if follow:
        _follow(files)


def _follow(files: list[Path]) -> None:
    positions = {path: path.stat().st_size if path.exists() else 0 for path in files}
    while True:
        for path in files:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < positions[path]:  # rotated
                positions[path] = 0
            if size > positions[path]:
                with open(path, "rb") as handle:
                    handle.seek(positions[path])
                    chunk = handle.read()
                positions[path] += len(chunk)
                click.echo(chunk.decode(errors="replace"), nl=False)
        time.sleep(0.5)
