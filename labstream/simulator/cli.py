"""`labstream simulate`: realistic lab activity written into the lab database."""

from __future__ import annotations

import json
import random
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

import click
from rich.console import Console

from base.db import connect, mask_url, resolve_url
from labstream.simulator.model import LabModel, SimulationConfig
from labstream.simulator.runner import TRACER_NAME, Runner, Summary
from labstream.simulator.writer import LabWriter


@click.command()
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Front-end actions per second (evenly paced).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to run; 0 runs until Ctrl-C.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Random seed: the same seed gives the same sequence of actions.",
)
@click.option(
    "--tenants",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Number of customer tenants submitting experiments.",
)
@click.option(
    "--run-id", default=None, help="Token in generated ids (exp-<run-id>-000001); default: random."
)
@click.option(
    "--database-url",
    envvar="LABSTREAM_DATABASE_URL",
    default=None,
    help="libpq URL of the lab database [env LABSTREAM_DATABASE_URL].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate(
    rate: float,
    duration: float,
    seed: int | None,
    tenants: int,
    run_id: str | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Write realistic lab activity into the lab database.

    Experiments are submitted, queued and run on free instruments; runs finish
    with results (a few fail); reagents are consumed and reordered, some lots
    expire within a week; fridges report temperatures every second with rare
    excursions above 8 °C and door openings. Each action is one transaction,
    traced as a SERVER span whose context travels in the transaction
    (pg_logical_emit_message 'traceparent'). Tracing settings: LABSTREAM_TRACING_*,
    OTEL_EXPORTER_OTLP_ENDPOINT.
    """
    from tracing.setup import configure_tracing, shutdown_tracing

    provider = configure_tracing("labstream-simulator")
    token = run_id or f"{int(time.time()) % 100000:05d}{secrets.token_hex(2)}"
    model = LabModel(random.Random(seed), SimulationConfig(run_token=token, tenants=tenants))
    url = resolve_url(database_url)
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # first Ctrl-C / SIGTERM (docker stop): finish the current action, then stop;
        # a second Ctrl-C interrupts at once
        nonlocal stop_requested
        stop_requested = True
        signal.signal(signal.SIGINT, previous_int)

    previous_int = signal.signal(signal.SIGINT, request_stop)
    previous_term = signal.signal(signal.SIGTERM, request_stop)
    try:
        with connect(url, autocommit=True, application_name="labstream-simulator") as conn:
            writer = LabWriter(conn)
            writer.seed(model.tenants, model.initial_lots(datetime.now(UTC)))
            runner = Runner(model, writer, rate, duration, tracer=provider.get_tracer(TRACER_NAME))
            with live_progress(enabled=not as_json, duration=duration) as on_tick:
                runner.on_tick = on_tick
                summary = runner.run(lambda: stop_requested)
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
        shutdown_tracing()
    if as_json:
        click.echo(json.dumps({"run_id": token, "database": mask_url(url), **summary.to_dict()}))
    else:
        click.echo(format_summary(summary, token))


@contextmanager
def live_progress(
    *, enabled: bool, duration: float
) -> Iterator[Callable[[Summary, float], None] | None]:
    """A one-line live status on stderr when it is a terminal; nothing otherwise."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    limit = f"/{duration:g}s" if duration else "s (Ctrl-C to stop)"
    with console.status("starting ...") as status:

        def update(summary: Summary, elapsed: float) -> None:
            counts = summary.actions
            status.update(
                f"{elapsed:.0f}{limit}  {summary.front_end_actions} actions "
                f"({summary.achieved_rate_at(elapsed):.1f}/s)  "
                f"experiments {counts['experiment.submit']}  runs {counts['run.finish']} done  "
                f"lots {counts['inventory.receive']}  rolled back {sum(summary.failed.values())}"
            )

        yield update


def format_summary(summary: Summary, token: str) -> str:
    lines = [
        f"simulated {summary.elapsed_s:.1f}s (run id {token}): {summary.front_end_actions} "
        f"front-end actions at {summary.achieved_rate:.2f}/s (target {summary.target_rate:g}/s), "
        f"{summary.telemetry_ticks} sensor ticks",
    ]
    width = max((len(kind) for kind in summary.actions), default=0)
    for kind, count in sorted(summary.actions.items()):
        lines.append(f"  {kind:<{width}}  {count}")
    if summary.failed:
        failed = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.failed.items()))
        lines.append(f"  rolled back: {failed}")
    lines.append(f"  transactions carrying a traceparent: {summary.traced_transactions}")
    return "\n".join(lines)
