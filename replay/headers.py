"""The headers and the trace of a replayed record.

A replayed record keeps the original's headers except its trace context, and adds:

- `labstream-replay-id`: the replay that produced it (`rp-...`);
- `labstream-replay-of`: `topic/partition/offset` of the original record;
- `labstream-replay-rerun-succeeded: v1.<expires>.<hmac>` only with
  `--rerun-succeeded`, telling the trigger to launch a job again even if the same
  job key already succeeded. It is signed with LABSTREAM_REPLAY_CONSENT_KEY over
  this record's key and value (`streams.replay_consent`): a producer without the
  key cannot forge it, nor move it to another record.

Each replayed record starts a new trace: a root PRODUCER span `replay <topic>`,
linked to the original record's trace, whose context becomes the new
`traceparent` (the old one, its `tracestate` and any beeline header are dropped,
never duplicated). So the original trace stays what happened then, and the
replay's own work (agents, jobs) is one new trace that points back at it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer

from base.contracts import headers
from streams import replay_consent
from tracing import beeline
from tracing.propagation import TRACEPARENT, TRACESTATE, extract_headers, inject_headers
from tracing.semconv import creation_link, set_lab_attributes, set_send_attributes

REPLAY_ID = headers.REPLAY_ID
REPLAY_OF = headers.REPLAY_OF
RERUN_SUCCEEDED = headers.RERUN_SUCCEEDED

_REPLACED = {
    name.lower()
    for name in (TRACEPARENT, TRACESTATE, beeline.HEADER, REPLAY_ID, REPLAY_OF, RERUN_SUCCEEDED)
}


def replay_of(topic: str, partition: int, offset: int) -> str:
    """`lab.public.runs/0/42` (Kafka topic names cannot contain '/')."""
    return f"{topic}/{partition}/{offset}"


def parse_replay_of(text: str) -> tuple[str, int, int]:
    topic, partition, offset = text.rsplit("/", 2)
    return topic, int(partition), int(offset)


def header_value(pairs: Sequence[tuple[str, bytes | None]], name: str) -> str | None:
    return headers.header_text(pairs, name)


def build_replay_headers(
    original: Sequence[tuple[str, bytes]],
    *,
    replay_id: str,
    original_coordinates: str,
    context: Context | None = None,
    rerun_succeeded: bool = False,
    record_key: bytes | None = None,
    record_value: bytes | None = None,
) -> list[tuple[str, bytes]]:
    """The original headers with the replay's marks and `context`'s trace context.

    `rerun_succeeded` signs the consent over `record_key` and `record_value` (the
    bytes produced with these headers); it needs LABSTREAM_REPLAY_CONSENT_KEY.

    A replay of a replayed record points at the record it read (the newest copy);
    `labstream-replay-of` of the older copy is replaced, not stacked.
    """
    headers = [(name, value) for name, value in original if name.lower() not in _REPLACED]
    headers.append((REPLAY_ID, replay_id.encode()))
    headers.append((REPLAY_OF, original_coordinates.encode()))
    if rerun_succeeded:
        headers.append((RERUN_SUCCEEDED, replay_consent.sign(
            replay_consent.require_consent_key(), replay_id=replay_id, record_key=record_key,
            record_value=record_value)))
    return inject_headers(headers, context)


@contextmanager
def replay_span(
    tracer: Tracer,
    *,
    topic: str,
    original_headers: Sequence[tuple[str, bytes]],
    original_coordinates: str,
    replay_id: str,
    key: str | None = None,
) -> Iterator[Span]:
    """A new root span `replay <topic>`, linked to the original record's trace."""
    original_context = extract_headers(list(original_headers))
    link = creation_link(original_context)
    with tracer.start_as_current_span(
        f"replay {topic}",
        context=Context(),  # a root: the replay is new work, not part of the old trace
        kind=SpanKind.PRODUCER,
        links=[link] if link is not None else None,
        attributes={REPLAY_OF: original_coordinates},
    ) as span:
        set_send_attributes(span, topic=topic, key=key, tombstone=False)
        set_lab_attributes(span, replay_id=replay_id)
        yield span


def current_context() -> Context:
    """The context to inject: the current span's (inside `replay_span`)."""
    return trace.set_span_in_context(trace.get_current_span())
