"""Tree order, link labels and rendering of `labstream trace` (no database)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from base.errors import LabstreamError
from tracing.cli import _spans_json, normalize_trace_id
from tracing.spanstore import StoredSpan
from tracing.waterfall import format_duration, render_waterfall, waterfall_rows

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MS = 1_000_000


def span(span_id: str, parent: str | None, name: str, start_ms: int, end_ms: int, **extra):
    return StoredSpan(
        trace_id=TRACE,
        span_id=span_id.rjust(16, "0"),
        parent_span_id=parent.rjust(16, "0") if parent else None,
        name=name,
        kind=extra.pop("kind", "INTERNAL"),
        service_name=extra.pop("service", "labstream-test"),
        start_time_unix_nano=1_700_000_000_000 * MS + start_ms * MS,
        end_time_unix_nano=1_700_000_000_000 * MS + end_ms * MS,
        status_code=extra.pop("status", "UNSET"),
        status_message=extra.pop("message", None),
        attributes=extra.pop("attributes", {}),
        links=extra.pop("links", []),
    )


SPANS = [
    span("5", "3", "launch job", 30, 90, attributes={"lab.job.id": "job-7"}),
    span("1", None, "POST /experiments", 0, 100),
    span(
        "3",
        "2",
        "process lab.public.experiments",
        20,
        95,
        links=[{"trace_id": TRACE, "span_id": "2".rjust(16, "0")}],
        attributes={
            "messaging.destination.name": "lab.public.experiments",
            "messaging.kafka.message.offset": 42,
        },
    ),
    span("2", "1", "send lab.public.experiments", 10, 15, kind="PRODUCER"),
    span("4", "1", "insert experiment", 5, 8, status="ERROR", message="boom"),
]


def test_rows_are_depth_first_with_siblings_by_start_time() -> None:
    rows = waterfall_rows(SPANS)
    assert [(row.span.name, row.depth) for row in rows] == [
        ("POST /experiments", 0),
        ("insert experiment", 1),
        ("send lab.public.experiments", 1),
        ("process lab.public.experiments", 2),
        ("launch job", 3),
    ]


def test_links_are_labelled_with_the_linked_span() -> None:
    rows = {row.span.name: row for row in waterfall_rows(SPANS)}
    assert rows["process lab.public.experiments"].link_labels == (
        "↳ linked from send lab.public.experiments (labstream-test)",
    )
    foreign = span("9", None, "replay", 0, 1, links=[{"trace_id": "f" * 32, "span_id": "a" * 16}])
    (row,) = waterfall_rows([foreign])
    assert row.link_labels == (f"↳ linked from trace {'f' * 32} span {'a' * 16}",)


def test_a_span_whose_parent_is_missing_is_shown_as_a_root() -> None:
    rows = waterfall_rows([span("7", "6", "orphan", 0, 1), span("8", None, "root", 2, 3)])
    assert [(row.span.name, row.depth, row.orphan) for row in rows] == [
        ("orphan", 0, True),
        ("root", 0, False),
    ]


def test_render_shows_every_span_errors_attributes_and_links() -> None:
    out = io.StringIO()
    render_waterfall(SPANS, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    positions = [
        text.index(name)
        for name in (
            "POST /experiments",
            "insert experiment",
            "send lab.public",
            "process lab.public",
            "launch job",
        )
    ]
    assert positions == sorted(positions)
    assert "ERROR" in text and "boom" in text
    assert "offset=42" in text and "job=job-7" in text
    assert "↳ linked from send lab.public.experiments" in text
    assert "5 spans" in text and "1 error(s)" in text


def test_json_keeps_tree_order_and_parents() -> None:
    document = json.loads(_spans_json(TRACE, SPANS, []))
    assert document["trace_id"] == TRACE and document["span_count"] == 5
    names = [s["name"] for s in document["spans"]]
    assert names[0] == "POST /experiments" and names[-1] == "launch job"
    by_name = {s["name"]: s for s in document["spans"]}
    assert (
        by_name["launch job"]["parent_span_id"]
        == by_name["process lab.public.experiments"]["span_id"]
    )
    assert by_name["launch job"]["duration_ns"] == 60 * MS


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (TRACE, TRACE),
        (TRACE.upper(), TRACE),
        (f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
        ("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", TRACE),
    ],
)
def test_trace_id_forms(given: str, expected: str) -> None:
    assert normalize_trace_id(given) == expected


def test_not_a_trace_id() -> None:
    with pytest.raises(LabstreamError) as excinfo:
        normalize_trace_id("exp-123")
    assert excinfo.value.hint


def test_format_duration() -> None:
    assert format_duration(1_500) == "2µs"
    assert format_duration(2 * MS) == "2.0ms"
    assert format_duration(3_000 * MS) == "3.00s"


def test_a_batch_send_span_shows_where_its_records_went() -> None:
    delivered = [
        {"name": "delivered", "attributes": {
            "messaging.destination.name": topic, "messaging.destination.partition.id": "0",
            "messaging.kafka.offset": first, "lab.kafka.offset.last": last,
            "messaging.batch.message_count": last - first + 1}}
        for topic, first, last in (("lab.public.a", 10, 19), ("lab.public.b", 3, 4))
    ]
    batch = span("9", None, "send", 0, 10, kind="PRODUCER",
                 attributes={"messaging.batch.message_count": 12})
    batch = StoredSpan(**{**batch.__dict__, "events": delivered})
    console = Console(file=io.StringIO(), width=200, color_system=None)
    render_waterfall([batch], console)
    text = console.file.getvalue()
    assert "records=12" in text
    assert "→ lab.public.a[0] offsets 10..19 (10 records)" in text
    assert "→ lab.public.b[0] offsets 3..4 (2 records)" in text
