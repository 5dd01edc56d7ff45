"""A trace as a waterfall: spans in tree order, offsets, duration bars, key attributes.

`waterfall_rows(spans)` is the pure part (tree order, depth, link labels) that
both the terminal view and `--json` use; `render_waterfall` draws it with rich.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracing.semconv import KEY_ATTRIBUTES
from tracing.spanstore import StoredSpan

MAX_BAR_WIDTH = 32
MIN_BAR_WIDTH = 10
SHORT_NAMES = {
    "messaging.destination.name": "topic",
    "messaging.destination.partition.id": "partition",
    "messaging.kafka.offset": "offset",
    "lab.kafka.offset.last": "last offset",
    "messaging.batch.message_count": "records",
    "messaging.kafka.destination.partition": "partition",  # spans stored before the rename
    "messaging.kafka.message.offset": "offset",
    "messaging.kafka.message.key": "key",
    "lab.experiment.id": "experiment",
    "lab.rule.id": "rule",
    "lab.job.id": "job",
    "lab.job.exit_code": "exit",
    "lab.replay.id": "replay",
}


@dataclass(frozen=True)
class WaterfallRow:
    span: StoredSpan
    depth: int
    # the parent span id is set but that span is not stored (yet, or another service's)
    orphan: bool
    link_labels: tuple[str, ...]


def format_duration(nanoseconds: int) -> str:
    if nanoseconds < 1_000_000:
        return f"{nanoseconds / 1_000:.0f}µs"
    if nanoseconds < 1_000_000_000:
        return f"{nanoseconds / 1_000_000:.1f}ms"
    return f"{nanoseconds / 1_000_000_000:.2f}s"


def _link_label(link: dict, by_id: dict[str, StoredSpan], trace_id: str) -> str:
    target = by_id.get(link.get("span_id", "")) if link.get("trace_id") == trace_id else None
    if target is not None:
        return f"↳ linked from {target.name} ({target.service_name})"
    return f"↳ linked from trace {link.get('trace_id', '?')} span {link.get('span_id', '?')}"


def waterfall_rows(spans: list[StoredSpan]) -> list[WaterfallRow]:
    """Spans depth-first: each parent before its children, siblings by start time."""
    by_id = {span.span_id: span for span in spans}
    children: dict[str | None, list[StoredSpan]] = defaultdict(list)
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in by_id else None
        children[parent].append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (s.start_time_unix_nano, s.span_id))

    rows: list[WaterfallRow] = []
    # explicit stack: traces can be deep (a chain of hops), recursion would not care
    stack = [(span, 0) for span in reversed(children[None])]
    while stack:
        span, depth = stack.pop()
        trace_id = span.trace_id
        labels = tuple(_link_label(link, by_id, trace_id) for link in span.links)
        orphan = span.parent_span_id is not None and span.parent_span_id not in by_id
        rows.append(WaterfallRow(span, depth, orphan, labels))
        stack.extend((child, depth + 1) for child in reversed(children[span.span_id]))
    return rows


def trace_document(
    trace_id: str, spans: list[StoredSpan], linking: list[StoredSpan] | None = None
) -> dict[str, Any]:
    """The `--json` / API form of a trace: spans in tree order with their depth."""
    return {
        "trace_id": trace_id,
        "span_count": len(spans),
        "spans": [{**row.span.to_dict(), "depth": row.depth} for row in waterfall_rows(spans)],
        "linking_spans": [span.to_dict() for span in linking or []],
    }


def key_attributes(span: StoredSpan) -> str:
    parts = [
        f"{SHORT_NAMES.get(name, name)}={span.attributes[name]}"
        for name in KEY_ATTRIBUTES
        if name in span.attributes
    ]
    return " ".join(parts)


def bar_width(console_width: int) -> int:
    return max(MIN_BAR_WIDTH, min(MAX_BAR_WIDTH, console_width // 6))


def _bar(span: StoredSpan, trace_start: int, trace_length: int, bar_columns: int) -> Text:
    scale = bar_columns / max(trace_length, 1)
    offset = min(int((span.start_time_unix_nano - trace_start) * scale), bar_columns - 1)
    width = max(1, min(round(span.duration_ns * scale), bar_columns - offset))
    color = "red" if span.status_code == "ERROR" else "cyan"
    padding_after = bar_columns - offset - width
    return Text(" " * offset) + Text("█" * width, style=color) + Text(" " * padding_after)


def _status(span: StoredSpan) -> Text:
    if span.status_code == "ERROR":
        return Text("ERROR", style="bold red")
    return Text(span.status_code.lower() if span.status_code != "UNSET" else "", style="green")


def _span_cell(row: WaterfallRow) -> Text:
    span = row.span
    indent = "  " * row.depth
    cell = Text(indent + ("└ " if row.depth else ""))
    cell.append(span.name, style="bold red" if span.status_code == "ERROR" else "bold")
    if row.orphan:
        cell.append(" (parent not stored)", style="dim")
    attributes = key_attributes(span)
    detail_indent = indent + ("  " if row.depth else "") + "  "
    if span.status_code == "ERROR" and span.status_message:
        cell.append("\n" + detail_indent + span.status_message, style="red")
    if attributes:
        cell.append("\n" + detail_indent + attributes, style="dim")
    for label in row.link_labels:
        cell.append("\n" + detail_indent + label, style="magenta")
    for line in delivery_lines(span):
        cell.append("\n" + detail_indent + line, style="dim")
    return cell


MAX_DELIVERY_LINES = 8


def delivery_lines(span: StoredSpan) -> list[str]:
    """A batch PRODUCER span's records per topic-partition (its `delivered` events), when
    they went to more than one (one is already in the span's own attributes)."""
    events = [e.get("attributes") or {} for e in span.events if e.get("name") == "delivered"]
    if len(events) < 2:
        return []
    lines = [
        f"→ {a.get('messaging.destination.name')}[{a.get('messaging.destination.partition.id')}]"
        f" offsets {a.get('messaging.kafka.offset')}..{a.get('lab.kafka.offset.last')}"
        f" ({a.get('messaging.batch.message_count')} records)"
        for a in events[:MAX_DELIVERY_LINES]
    ]
    if len(events) > MAX_DELIVERY_LINES:
        lines.append(f"→ ... {len(events) - MAX_DELIVERY_LINES} more partitions")
    return lines


def render_waterfall(
    spans: list[StoredSpan], console: Console, *, linking: list[StoredSpan] | None = None
) -> None:
    rows = waterfall_rows(spans)
    trace_start = min(s.start_time_unix_nano for s in spans)
    trace_end = max(s.end_time_unix_nano for s in spans)
    services = sorted({s.service_name for s in spans})
    errors = sum(1 for s in spans if s.status_code == "ERROR")
    console.print(
        f"[bold]trace {spans[0].trace_id}[/]  {len(spans)} spans · {len(services)} services · "
        f"{format_duration(trace_end - trace_start)}"
        + (f" · [bold red]{errors} error(s)[/]" if errors else "")
    )
    bar_columns = bar_width(console.width)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("service", no_wrap=True)
    # the span cell holds the name, then its key attributes and links on dim lines
    table.add_column("span", overflow="fold", ratio=1)
    table.add_column("start", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("timeline", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in rows:
        span = row.span
        table.add_row(
            span.service_name,
            _span_cell(row),
            "+" + format_duration(span.start_time_unix_nano - trace_start),
            format_duration(span.duration_ns),
            _bar(span, trace_start, trace_end - trace_start, bar_columns),
            _status(span),
        )
    console.print(table)
    if linking:
        console.print("[bold]spans in other traces that link here[/] (replays, batches)")
        for span in linking:
            console.print(f"  {span.trace_id}  {span.service_name}  {span.name}")
