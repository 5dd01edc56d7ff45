"""One PRODUCER span for a batch of records (a source transaction), not one per record.

A span per record cost the CDC connector two thirds of its throughput
(docs/BENCHMARKS.md); a transaction is what the user wrote in one go, so it is the
unit a trace shows. `TxSendSpan` is started once per batch, every record of the
batch is produced with its `headers` (the span's `traceparent`) and its `delivered`
callback, and it ends when the batch is sealed and Kafka acknowledged the last
record (at that acknowledgement's time). What the span keeps per record is a
counter and a (topic, partition) -> first/last offset entry; at the end this becomes
one span event per topic-partition, so Honeycomb, Jaeger and `labstream trace` show
where every record went without a span each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from tracing import semconv

EVENT_NAME = "delivered"


class TxSendSpan:
    """The PRODUCER span of one batch; `delivered` is the records' delivery callback."""

    __slots__ = (
        "_last", "_on_delivered", "_operations", "_partitions", "_tables", "_topics", "ended",
        "error", "headers", "last_ack_ns", "outstanding", "recording", "records", "sealed",
        "span",
    )

    def __init__(self, span: Span, headers: list[tuple[str, bytes]],
                 on_delivered: Callable[[Any, Any], None]) -> None:
        self.span = span
        self.headers = headers
        self._on_delivered = on_delivered
        self.recording = span.is_recording()
        self.outstanding = 0
        self.records = 0
        self.sealed = False
        self.ended = False
        self.error: Any = None
        self.last_ack_ns = 0
        # distinct values only; consecutive records mostly repeat the last ones, so a
        # comparison with the previous record's is all most records cost
        self._last: tuple[Any, Any, Any] = (None, None, None)
        self._topics: set[str] = set()
        self._tables: set[Any] = set()
        self._operations: set[str] = set()
        self._partitions: dict[tuple[str, int], list[int]] = {}  # [first, last, count]

    def add(self, topic: str, table: Any = None, operation: str | None = None) -> None:
        """One more record of the batch is being produced (`table`: anything whose str()
        names the table, formatted only when the span ends)."""
        self.outstanding += 1
        self.records += 1
        if not self.recording:
            return
        last = self._last
        if topic is not last[0] or table is not last[1] or operation != last[2]:
            self._last = (topic, table, operation)
            self._topics.add(topic)
            if table is not None:
                self._tables.add(table)
            if operation is not None:
                self._operations.add(operation)

    def delivered(self, err: Any, msg: Any) -> None:
        """confluent-kafka delivery callback of each record of the batch."""
        self.outstanding -= 1
        if err is not None:
            if self.error is None:
                self.error = err
        elif self.recording and msg is not None:
            where = (msg.topic(), msg.partition())
            offset = msg.offset()
            seen = self._partitions.get(where)
            if seen is None:
                self._partitions[where] = [offset, offset, 1]
            else:
                seen[0] = min(seen[0], offset)
                seen[1] = max(seen[1], offset)
                seen[2] += 1
        if self.outstanding <= 0:  # the last one so far: the span may end at this time
            self.last_ack_ns = time.time_ns()
        self._on_delivered(err, msg)
        if self.sealed and self.outstanding <= 0:
            self.finish()

    def seal(self) -> None:
        """No more records will be added; end now if all are already acknowledged."""
        self.sealed = True
        if self.outstanding <= 0:
            self.finish()

    def finish(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.recording:
            self._describe()
        self.span.end(end_time=self.last_ack_ns or None)

    def _describe(self) -> None:
        span = self.span
        span.set_attribute(semconv.MESSAGING_SYSTEM, "kafka")
        span.set_attribute(semconv.MESSAGING_OPERATION_TYPE, "send")
        span.set_attribute(semconv.MESSAGING_OPERATION_NAME, "send")
        span.set_attribute(semconv.MESSAGING_BATCH_COUNT, self.records)
        _one_or_many(span, self._topics, semconv.MESSAGING_DESTINATION, semconv.LAB_TOPICS)
        _one_or_many(span, {str(t) for t in self._tables}, semconv.LAB_TABLE, semconv.LAB_TABLES)
        if len(self._operations) == 1:
            span.set_attribute(semconv.LAB_OPERATION, next(iter(self._operations)))
        if len(self._topics) == 1:
            span.update_name(f"send {next(iter(self._topics))}")
        if len(self._partitions) == 1:
            (_, partition), (first, last, _) = next(iter(self._partitions.items()))
            span.set_attribute(semconv.MESSAGING_PARTITION, str(partition))
            span.set_attribute(semconv.MESSAGING_OFFSET, first)
            span.set_attribute(semconv.LAB_OFFSET_LAST, last)
        for (topic, partition), (first, last, count) in self._partitions.items():
            span.add_event(EVENT_NAME, {
                semconv.MESSAGING_DESTINATION: topic,
                semconv.MESSAGING_PARTITION: str(partition),
                semconv.MESSAGING_OFFSET: first,
                semconv.LAB_OFFSET_LAST: last,
                semconv.MESSAGING_BATCH_COUNT: count,
            }, timestamp=self.last_ack_ns or None)
        if self.error is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(self.error)))


def _one_or_many(span: Span, values: set[str], one: str, many: str) -> None:
    if len(values) == 1:
        span.set_attribute(one, next(iter(values)))
    elif values:
        span.set_attribute(many, sorted(values))
