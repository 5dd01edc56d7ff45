"""The `labstream` command: one entry point, a subcommand per area.

Subcommands are loaded lazily from the explicit registry below, so
`labstream --help` stays fast and one area's import error cannot break the
others. Errors raised on purpose (`LabstreamError`) become a one-line message
with the fix and a non-zero exit code; `--debug` shows the traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from base import __version__
from base.errors import LabstreamError

# name -> (module, attribute, one-line help). Each area owns its module.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "stack": (
        "labstream.stack.cli",
        "stack",
        "Start, stop and inspect the local PostgreSQL + Kafka stack.",
    ),
    "db": (
        "labstream.db.cli",
        "db",
        "Lab database: migrations and status.",
    ),
    "cdc": (
        "connectors.cli",
        "cdc",
        "Run the CDC connector (PostgreSQL -> Kafka), show its status, reset it.",
    ),
    "worker": (
        "streams.cli",
        "worker",
        "Run the stream worker: enrich, route and trigger jobs from CDC topics.",
    ),
    "simulate": (
        "labstream.simulator.cli",
        "simulate",
        "Write realistic lab activity into the lab database.",
    ),
    "api": (
        "labstream.api.cli",
        "api",
        "Serve the lab API (experiments, jobs, job logs, traces) over HTTP.",
    ),
    "tokens": (
        "labstream.auth.cli",
        "tokens",
        "API tokens for the lab API and console: create (shown once), list, revoke.",
    ),
    "trace": (
        "tracing.cli",
        "trace",
        "Show one trace (front end -> DB -> Kafka -> agents -> job) as a waterfall.",
    ),
    "explain": (
        "explain.cli",
        "explain",
        "Why did (or didn't) a change trigger its job? Answers with evidence and the fix.",
    ),
    "demo": (
        "labstream.demo",
        "demo",
        "Run simulator -> CDC -> agents -> jobs on the local stack; print where to look.",
    ),
    "registry": (
        "connectors.registry.cli",
        "registry",
        "Serve the lab-database schema registry in the Confluent REST shape.",
    ),
    "replay": (
        "replay.cli",
        "replay",
        "List, dry-run and re-drive recorded events (by time, key, trace, filter).",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labstream")
@click.option("--debug", is_flag=True, envvar="LABSTREAM_DEBUG", help="Show tracebacks on errors.")
@click.pass_context
def app(ctx: click.Context, debug: bool) -> None:
    """labstream: lab database changes to Kafka, agents that trigger jobs,
    one trace end to end, and replay."""
    from base import logs

    logs.configure()
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> Any:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        return app.main(args=argv, prog_name="labstream", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LabstreamError as exc:
        if debug:
            traceback.print_exc()
        click.secho(f"error: {exc.message}", fg="red", err=True)
        if exc.hint:
            click.echo(f"  fix: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
