"""`labstream replay`: list, show, dry-run, re-drive and resume recorded events.

labstream replay ls --topic lab.public.runs --from -2h --filter 'after.status == "completed"'
labstream replay show lab.public.runs/0/42
labstream replay run --topic lab.public.runs --from -2h --op u        # dry run
labstream replay run ... --execute --target-topic replay.runs --rate 50
labstream replay resume rp-20261125T141502-3f9a1c
labstream replay history
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from replay import store
from replay.exceptions import SelectionError
from replay.record import ReplayRecord
from replay.redrive import RedriveOptions
from replay.selection import ScanStats, Selection, build_selection
from replay.timespec import format_millis

SELECTION_HELP = """
Selection: --topic (repeatable, globs like 'lab.public.*'), --from/--to (ISO-8601 or
-2h, -30m, -1d, now; UTC unless an offset is given), --offsets topic:partition:start-end,
--key (primary key value), --trace (trace id), --op c,u,d,r, --filter EXPR
(e.g. 'after.kind == "hplc" and op in ("c", "u")'), --limit N, --include-replays
(records produced by earlier replays are left out unless given).
"""


def selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--topic", "-t", "topics", multiple=True, help="Topic or glob (repeatable)."),
        click.option("--from", "from_text", help="Start time: ISO-8601 or -2h/-30m/-1d/now."),
        click.option("--to", "to_text", help="End time (inclusive), same forms as --from."),
        click.option(
            "--offsets", multiple=True, help="topic:partition:start-end (inclusive; repeatable)."
        ),
        click.option("--key", "keys", multiple=True, help="Primary key value (repeatable)."),
        click.option("--trace", "trace_id", help="Trace id (32 hex) from the traceparent header."),
        click.option("--op", "ops", multiple=True, help="Debezium ops: c,u,d,r,t (repeatable)."),
        click.option("--filter", "filter_text", help="Expression over the decoded envelope."),
        click.option("--limit", type=int, help="Stop after this many matching records."),
        click.option(
            "--include-replays",
            is_flag=True,
            help="Also select records produced by earlier replays (left out by default).",
        ),
    ]
    for option in reversed(options):
        command = option(command)

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        fields = ("topics", "from_text", "to_text", "offsets", "keys", "trace_id", "ops")
        extra = ("filter_text", "limit", "include_replays")
        values = {name: kwargs.pop(name) for name in (*fields, *extra)}
        kwargs["selection"] = build_selection(**values)
        return command(**kwargs)

    return wrapper


def _start_tracing() -> None:
    """Replay spans go where every labstream span goes; flushed when the command exits."""
    import atexit

    from tracing.setup import configure_tracing, shutdown_tracing

    configure_tracing("labstream-replay")
    atexit.register(shutdown_tracing)


def _session() -> Any:
    from replay.runner import Session

    return Session()


def _console(err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=False, width=None)


@click.group("replay")
def replay() -> None:
    """Read recorded events back out of Kafka; dry-run or re-drive them into the chain.

    Reads LABSTREAM_KAFKA_BOOTSTRAP_SERVERS, LABSTREAM_DATABASE_URL (replays, schema
    registry, decisions), SCHEMA_REGISTRY_URL (when the connector uses an HTTP
    registry) and the OTEL_*/LABSTREAM_TRACING_* settings (re-drive spans).
    """


@replay.command("topics")
def topics_command() -> None:
    """List the topics a replay can read."""
    with _session() as session:
        for name in sorted(session.consumer.topics()):
            count = len(session.consumer.partitions_for_topic(name) or ())
            click.echo(f"{name}\t{count} partition(s)")


@replay.command("ls", epilog=SELECTION_HELP)
@selection_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def ls_command(selection: Selection, as_json: bool) -> None:
    """List matching records: coordinates, time, key, op, trace id, summary."""
    from replay.runner import start_scan

    with _session() as session:
        scan = start_scan(session, selection)
        records = scan.records()
        if as_json:
            for record in records:
                click.echo(json.dumps(record.to_json(), default=str))
        else:
            _print_table(records)
        _print_counts(scan.stats, err=as_json)


@replay.command("show", epilog=SELECTION_HELP)
@click.argument("coordinates", nargs=-1)
@click.option("--topic", "-t", "topics", multiple=True, help="Topic or glob (repeatable).")
@click.option("--from", "from_text", help="Start time: ISO-8601 or -2h/-30m/-1d/now.")
@click.option("--to", "to_text", help="End time (inclusive).")
@click.option("--key", "keys", multiple=True, help="Primary key value (repeatable).")
@click.option("--trace", "trace_id", help="Trace id (32 hex).")
@click.option("--op", "ops", multiple=True, help="Debezium ops (repeatable).")
@click.option("--filter", "filter_text", help="Expression over the decoded envelope.")
@click.option("--limit", type=int, default=20, show_default=True, help="At most this many.")
@click.option("--include-replays", is_flag=True, help="Also records produced by replays.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def show_command(coordinates: tuple[str, ...], as_json: bool, **values: Any) -> None:
    """Show records in full (headers and decoded value), by topic/partition/offset or selection."""
    from replay.runner import start_scan

    offsets = [_coordinates_to_range(text) for text in coordinates]
    selection = build_selection(offsets=offsets, **values)
    with _session() as session:
        scan = start_scan(session, selection)
        for record in scan.records():
            if as_json:
                click.echo(json.dumps(record.to_json(), default=str))
            else:
                _print_record(record)
        _print_counts(scan.stats, err=True)


def _coordinates_to_range(text: str) -> str:
    parts = text.rsplit("/", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise SelectionError(
            f"{text!r} is not topic/partition/offset", hint="e.g. lab.public.runs/0/42"
        )
    return f"{parts[0]}:{parts[1]}:{parts[2]}"


@replay.command("run", epilog=SELECTION_HELP)
@selection_options
@click.option("--execute", is_flag=True, help="Produce the records (default: dry run).")
@click.option("--target-topic", help="Produce here instead of each record's own topic.")
@click.option("--rate", type=click.FloatRange(min=0.001), help="At most N records per second.")
@click.option("--yes", is_flag=True, help="Do not ask before replaying into production topics.")
@click.option(
    "--rerun-succeeded",
    is_flag=True,
    help="Launch jobs again even when the same job already succeeded.",
)
@click.option("--json", "as_json", is_flag=True, help="Dry run: one JSON object per record.")
@click.option(
    "--reference",
    "reference_source",
    type=click.Choice(["topics", "db"]),
    default="topics",
    show_default=True,
    help="Dry run: reference data and rules from the CDC topics (as the worker) or the lab DB.",
)
def run_command(
    selection: Selection,
    execute: bool,
    target_topic: str | None,
    rate: float | None,
    yes: bool,
    rerun_succeeded: bool,
    as_json: bool,
    reference_source: str,
) -> None:
    """Dry-run the selected records through today's enrich/route/trigger, or --execute them."""
    if not execute:
        if target_topic or rate or rerun_succeeded:
            raise SelectionError(
                "--target-topic, --rate and --rerun-succeeded only apply with --execute",
                hint="add --execute to produce records, or drop those options for a dry run",
            )
        _dry_run(selection, as_json, reference_source)
        return
    from replay import runner

    if rerun_succeeded:  # fail before producing anything, not at the first record
        from streams.replay_consent import require_consent_key

        require_consent_key()
    _start_tracing()
    options = runner.with_batching(
        RedriveOptions(target_topic=target_topic, rate=rate, rerun_succeeded=rerun_succeeded)
    )
    with _session() as session, _ProgressBar() as bar:
        row, redrive = runner.execute(
            session,
            selection,
            options,
            yes=yes,
            confirm=_confirm,
            on_progress=bar.update,
            on_start=bar.start,
        )
    _print_summary(row, redrive.undecodable)


@replay.command("resume")
@click.argument("replay_id")
@click.option("--rate", type=click.FloatRange(min=0.001), help="Override the recorded --rate.")
def resume_command(replay_id: str, rate: float | None) -> None:
    """Continue an interrupted re-drive from its last acknowledged batch."""
    from replay import runner

    _start_tracing()
    with _session() as session, _ProgressBar() as bar:
        row, redrive = runner.resume(
            session, replay_id, rate=rate, on_progress=bar.update, on_start=bar.start
        )
    _print_summary(row, redrive.undecodable)


@replay.command("history")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def history_command(limit: int, as_json: bool) -> None:
    """Recorded replays, newest first."""
    from base.db import connect

    with connect(application_name="labstream-replay") as conn:
        rows = store.history(conn, limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.to_json(), default=str))
        return
    table = Table(
        "id",
        "created",
        "mode",
        "status",
        "target",
        "matched",
        "undecodable",
        "produced",
        "selection",
        box=None,
    )
    for row in rows:
        table.add_row(
            row.id,
            row.created_at.strftime("%Y-%m-%d %H:%M:%S") if row.created_at else "-",
            row.mode,
            row.status,
            row.target or "(own topics)",
            str(row.matched),
            str(row.undecodable),
            str(row.produced),
            Selection.from_json(row.selection).describe(),
        )
    _console().print(table)


# -- output --------------------------------------------------------------------------------


def _print_table(records: Any) -> None:
    table = Table("topic/partition/offset", "time", "key", "op", "trace id", "summary", box=None)
    for record in records:
        table.add_row(
            record.coordinates,
            format_millis(record.timestamp),
            record.key_text(),
            record.op or ("-" if record.decode_error else "tombstone"),
            record.trace_id or "-",
            record.summary(),
        )
    _console().print(table)


def _print_record(record: ReplayRecord) -> None:
    click.echo(
        f"== {record.coordinates}  {format_millis(record.timestamp)}  key={record.key_text()}"
    )
    for name, value in record.headers:
        click.echo(f"   header {name}: {value.decode('utf-8', 'replace')}")
    if record.decode_error:
        click.echo(f"   undecodable: {record.decode_error}")
    else:
        click.echo(json.dumps(record.value, indent=2, default=str))


def _print_counts(stats: ScanStats, *, err: bool) -> None:
    click.echo(
        f"scanned {stats.scanned}, matched {stats.matched}, undecodable {stats.undecodable}",
        err=err,
    )
    _print_left_out_replays(stats)


def _print_left_out_replays(stats: ScanStats) -> None:
    """Say why a selection of replayed copies matched nothing, and what to select instead."""
    if not stats.replays_left_out:
        return
    original = f"; the original is {stats.replay_of}" if stats.replay_of else ""
    instead = (
        f" (select it: --offsets {_coordinates_to_option(stats.replay_of)})"
        if stats.replay_of
        else ""
    )
    click.echo(
        f"left out {stats.replays_left_out} record(s) produced by earlier replays"
        f"{original}{instead}; add --include-replays to select the copies themselves",
        err=True,
    )


def _coordinates_to_option(coordinates: str | None) -> str:
    topic, partition, offset = str(coordinates).rsplit("/", 2)
    return f"{topic}:{partition}:{offset}"


def _print_summary(row: store.ReplayRow, undecodable: list[str]) -> None:
    for line in undecodable[:20]:
        click.echo(f"undecodable (not produced): {line}", err=True)
    if len(undecodable) > 20:
        click.echo(f"... and {len(undecodable) - 20} more undecodable records", err=True)
    click.echo(
        f"replay {row.id} {row.status}: matched {row.matched}, undecodable {row.undecodable}, "
        f"produced {row.produced} -> {row.target or 'their own topics'}"
    )


def _confirm(count: int, topics: list[str]) -> bool:
    if not sys.stdin.isatty():
        return False
    return click.confirm(
        f"Replay {count} record(s) into production topic(s) {', '.join(topics)}? "
        "The live agents will process them",
        default=False,
        err=True,
    )


class _ProgressBar:
    """A rich progress bar on stderr, driven by the re-drive's checkpoints."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("produced {task.fields[produced]}"),
            TimeRemainingColumn(),
            console=_console(err=True),
            transient=False,
        )
        self.task: Any = None

    def __enter__(self) -> _ProgressBar:
        # not started here: a live rich display holds back stderr writes until a newline,
        # so the re-drive's yes/no question (no newline) would never show and the command
        # would look hung. The bar starts once the replay does, after the question.
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.progress.stop()

    def start(self, row: store.ReplayRow) -> None:
        self.progress.start()
        self.task = self.progress.add_task(
            f"replay {row.id}", total=row.total or None, completed=row.done, produced=row.produced
        )

    def update(self, row: store.ReplayRow, stats: ScanStats) -> None:
        if self.task is not None:
            done = min(row.done, row.total) if row.total else row.done  # total: --limit
            self.progress.update(self.task, completed=done, produced=row.produced)


class _DryRunProgress:
    """Dry-run progress on stderr: a bar on a terminal, a line every 5 s otherwise (output
    to a file must not stay silent for minutes); the total is what will really be read."""

    def __init__(self) -> None:
        self.console = _console(err=True)
        self.bar = Progress(TextColumn("dry run"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=self.console, transient=True)
        self.task = self.bar.add_task("dry run", total=None)
        self.next_line = 0.0

    def __enter__(self) -> _DryRunProgress:
        if self.console.is_terminal:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(self, done: int, total: int | None) -> None:
        import time

        if self.console.is_terminal:
            self.bar.update(self.task, completed=done, total=total)
        elif time.monotonic() >= self.next_line:
            self.next_line = time.monotonic() + 5.0
            of = f" of {total:,}" if total else ""
            click.echo(f"dry run: {done:,}{of} records read", err=True)


def _dry_run(selection: Selection, as_json: bool, reference_source: str) -> None:
    from replay import dryrun

    with _session() as session, _DryRunProgress() as progress:
        report = dryrun.dry_run(session, selection, reference_source=reference_source,
                                on_progress=progress.update)
    if as_json:
        for outcome in report.outcomes:
            click.echo(json.dumps(outcome.to_json(), default=str))
    else:
        for line in report.lines():
            click.echo(line)
    click.echo(report.summary(), err=as_json)
    _print_left_out_replays(report.stats)
