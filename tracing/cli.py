"""`labstream trace <trace-id>`: one trace from the lab DB span store, as a waterfall."""

from __future__ import annotations

import json
from typing import Any

import click
import psycopg
from rich.console import Console

from base.contracts import traceids
from base.db import connect
from base.errors import LabstreamError
from tracing.exceptions import TraceNotFound
from tracing.spanstore import (
    StoredSpan,
    fetch_linking_spans,
    fetch_trace,
    find_traces_by_experiment,
)
from tracing.waterfall import render_waterfall, trace_document

NOT_EXPORTING_HINT = (
    "is tracing exporting to the lab DB? see LABSTREAM_TRACING_EXPORTERS "
    "(it must include db, the default) and wait a few seconds for the batch to be written"
)


def normalize_trace_id(text: str) -> str:
    """32 lower-case hex digits from a trace id, a traceparent or a UUID-style beeline id."""
    trace_id = traceids.trace_id_of(text)
    if trace_id is None:
        raise LabstreamError(f"{text!r} is not a trace id", hint=traceids.FORMS_HINT)
    return trace_id


def _console() -> Console:
    console = Console(highlight=False)
    if console.is_terminal:
        return console
    # a pipe (or CliRunner) would get 80 columns and cut the waterfall; keep it readable
    return Console(highlight=False, width=160)


def _query(database_url: str | None, fn: Any, *args: Any) -> Any:
    with connect(database_url, autocommit=True, application_name="labstream-trace") as conn:
        try:
            return fn(conn, *args)
        except psycopg.errors.UndefinedTable as exc:
            raise LabstreamError(
                "the span store table labstream.spans does not exist",
                hint="run `labstream db migrate`",
            ) from exc


def _spans_json(trace_id: str, spans: list[StoredSpan], linking: list[StoredSpan]) -> str:
    return json.dumps(trace_document(trace_id, spans, linking), indent=2, default=str)


@click.command("trace")
@click.argument("trace_id", required=False)
@click.option("--experiment", "experiment_id", help="List the traces of this experiment id.")
@click.option("--json", "as_json", is_flag=True, help="Print spans as JSON (stable keys).")
@click.option(
    "--database-url",
    envvar="LABSTREAM_DATABASE_URL",
    help="Lab DB holding labstream.spans (LABSTREAM_DATABASE_URL).",
)
def trace(
    trace_id: str | None, experiment_id: str | None, as_json: bool, database_url: str | None
) -> None:
    """Show one trace as a waterfall: TRACE_ID is 32 hex digits or a traceparent.

    Spans come from the lab DB span store (labstream.spans), written by every
    labstream process unless LABSTREAM_TRACING_EXPORTERS leaves out `db`.
    """
    if experiment_id is not None:
        _list_experiment_traces(experiment_id, as_json, database_url)
        return
    if trace_id is None:
        raise click.UsageError("give a TRACE_ID or --experiment ID")
    normalized = normalize_trace_id(trace_id)
    spans = _query(database_url, fetch_trace, normalized)
    if not spans:
        raise TraceNotFound(f"no spans for trace {normalized}", hint=NOT_EXPORTING_HINT)
    linking = _query(database_url, fetch_linking_spans, normalized)
    if as_json:
        click.echo(_spans_json(normalized, spans, linking))
    else:
        render_waterfall(spans, _console(), linking=linking)


def _list_experiment_traces(experiment_id: str, as_json: bool, database_url: str | None) -> None:
    summaries = _query(database_url, find_traces_by_experiment, experiment_id)
    if not summaries:
        raise TraceNotFound(
            f"no traces with lab.experiment.id={experiment_id}", hint=NOT_EXPORTING_HINT
        )
    if as_json:
        click.echo(json.dumps([s.__dict__ for s in summaries], indent=2))
        return
    console = _console()
    for summary in summaries:
        console.print(
            f"{summary.trace_id}  {summary.span_count:>4} spans  {summary.root_name or '?'}"
        )
