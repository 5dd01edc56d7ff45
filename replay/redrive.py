"""`--execute`: produce the selected records again, marked, traced, resumable.

Each matching record is produced with its original key and value bytes to its
own topic (same partition, so per-key order is the original's) or to
`--target-topic`, in scan order (offset order per partition), at most `--rate`
records per second. Headers: see `replay.headers`. Records that no longer decode
are counted as `undecodable` and not produced (nobody could consume them).

Exactly once across crashes, by construction:
- every `batch_size` records or `batch_seconds`, the producer is flushed (all
  delivery reports in), and only then the replay row records, per source
  partition, the last offset scanned (everything before it is handled);
- a resume starts after those offsets, and first reads the target partitions
  from the positions recorded with that batch: records carrying this replay's
  id were produced after the last checkpoint (crash between ack and commit),
  so their originals are skipped instead of produced twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from opentelemetry import trace

from replay import store
from replay.exceptions import ReplayError
from replay.headers import (
    REPLAY_ID,
    REPLAY_OF,
    build_replay_headers,
    current_context,
    header_value,
    replay_span,
)
from replay.record import ReplayRecord
from replay.selection import PartitionPlan, ScanStats, poll_records, reassign


class DeliveryFailed(ReplayError):
    """The broker refused records of a batch; the replay stops at the last checkpoint."""


@dataclass(frozen=True)
class RedriveOptions:
    target_topic: str | None = None
    rate: float | None = None  # records per second; None = as fast as the broker takes them
    rerun_succeeded: bool = False
    batch_size: int = 200
    batch_seconds: float = 1.0


class RateLimiter:
    """At most `rate` calls of `wait()` per second, without drift (schedule, not sleeps)."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_slot: float | None = None

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if self.next_slot is None or self.next_slot < now - self.interval:
            self.next_slot = now  # first call, or we fell behind: don't burst to catch up
        if self.next_slot > now:
            self.sleep(self.next_slot - now)
        self.next_slot += self.interval


def position_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def resume_plans(plans: Iterable[PartitionPlan], progress: dict[str, int]) -> list[PartitionPlan]:
    """The plan of a resumed replay: each partition starts after its last handled offset."""
    resumed = []
    for item in plans:
        handled = progress.get(position_key(item.topic, item.partition))
        start = item.start if handled is None else max(item.start, handled + 1)
        if start < item.stop:
            resumed.append(PartitionPlan(item.topic, item.partition, start, item.stop))
    return resumed


def record_scan_position(
    progress: dict[str, int], stats_positions: dict[tuple[str, int], int]
) -> None:
    for (topic, partition), offset in stats_positions.items():
        progress[position_key(topic, partition)] = offset


@dataclass
class _Deliveries:
    """Delivery reports of the current batch (filled by librdkafka callbacks in flush/poll)."""

    errors: list[str] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)

    def on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(f"{message.topic()}: {error}")
            return
        where = position_key(message.topic(), message.partition())
        self.positions[where] = max(self.positions.get(where, 0), message.offset() + 1)


class Redrive:
    """Produces the records of one replay; checkpoints into `labstream.replays`."""

    def __init__(
        self,
        *,
        row: store.ReplayRow,
        options: RedriveOptions,
        producer: Any,
        conn: psycopg.Connection,
        partitions_of: Callable[[str], int],
        already_produced: set[str] | None = None,
        on_progress: Callable[[store.ReplayRow, ScanStats], None] | None = None,
    ) -> None:
        self.row, self.options, self.producer, self.conn = row, options, producer, conn
        self.partitions_of = partitions_of
        self.already_produced = already_produced or set()
        self.on_progress = on_progress
        self.tracer = trace.get_tracer("labstream.replay")
        self.limiter = RateLimiter(options.rate)
        self.deliveries = _Deliveries()
        self.undecodable: list[str] = []
        self.in_hand: ReplayRecord | None = None  # received from the scan, not yet handled

    def target_of(self, record: ReplayRecord) -> tuple[str, int | None]:
        """Topic and partition: the original partition when the target has it, else by key."""
        topic = self.options.target_topic or record.topic
        if topic == record.topic or record.partition < self.partitions_of(topic):
            return topic, record.partition
        return topic, None

    def produce(self, record: ReplayRecord) -> None:
        topic, partition = self.target_of(record)
        self.limiter.wait()
        with replay_span(
            self.tracer,
            topic=topic,
            original_headers=record.headers,
            original_coordinates=record.coordinates,
            replay_id=self.row.id,
            # the primary key as text: raw Avro key bytes hold NULs that jsonb rejects
            key=record.key_text() or None,
        ):
            headers = build_replay_headers(
                record.headers,
                replay_id=self.row.id,
                original_coordinates=record.coordinates,
                context=current_context(),
                rerun_succeeded=self.options.rerun_succeeded,
                record_key=record.key_bytes,
                record_value=record.value_bytes,
            )
            extra = {} if partition is None else {"partition": partition}
            while True:
                try:
                    self.producer.produce(
                        topic,
                        key=record.key_bytes,
                        value=record.value_bytes,
                        headers=headers,
                        on_delivery=self.deliveries.on_delivery,
                        **extra,
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    self.producer.poll(0.5)
        self.producer.poll(0)

    def checkpoint(self, stats: ScanStats, *, interrupted: bool = False) -> None:
        """Flush, then record progress: only acknowledged work is ever recorded.

        `interrupted`: called while a record may be half handled (Ctrl-C inside
        produce): its partition is recorded up to the record before it, and the
        target positions are not advanced, so a resume looks for it in the target.
        """
        remaining = self.producer.flush(60)
        if remaining or self.deliveries.errors:
            problems = self.deliveries.errors[:3] or [f"{remaining} records not acknowledged"]
            raise DeliveryFailed(
                f"replay {self.row.id}: Kafka did not accept every record: {'; '.join(problems)}",
                hint=f"fix the cause, then `labstream replay resume {self.row.id}`",
            )
        if not interrupted:
            self.row.target_positions.update(self.deliveries.positions)
            self.deliveries.positions.clear()
        positions = dict(stats.positions)
        if self.in_hand is not None:
            positions[(self.in_hand.topic, self.in_hand.partition)] = self.in_hand.offset - 1
        record_scan_position(self.row.progress, positions)
        self.row.done, self.row.matched = stats.scanned, stats.matched
        self.row.undecodable = stats.undecodable
        store.record_progress(self.conn, self.row)
        if self.on_progress is not None:
            self.on_progress(self.row, stats)

    def run(self, records: Iterator[ReplayRecord], stats: ScanStats) -> store.ReplayRow:
        since_checkpoint, last_checkpoint = 0, time.monotonic()
        for record in records:
            self.in_hand = record
            if record.decode_error is not None:
                self.undecodable.append(f"{record.coordinates}: {record.decode_error}")
            elif record.coordinates in self.already_produced:
                self.row.produced += 1  # produced before a crash, found in the target topic
            else:
                self.produce(record)
                self.row.produced += 1
                since_checkpoint += 1
            self.in_hand = None
            due = time.monotonic() - last_checkpoint >= self.options.batch_seconds
            if since_checkpoint >= self.options.batch_size or due:
                self.checkpoint(stats)
                since_checkpoint, last_checkpoint = 0, time.monotonic()
        self.checkpoint(stats)
        return self.row


def find_already_produced(
    consumer: Any, replay_id: str, target_positions: dict[str, int]
) -> set[str]:
    """Originals (`topic/partition/offset`) that this replay produced after its last checkpoint.

    Reads each recorded target partition from its recorded position to its end
    and collects `labstream-replay-of` of the records carrying `replay_id`.
    """
    from kafka import TopicPartition

    starts = {}
    for where, offset in target_positions.items():
        topic, partition = where.rsplit("/", 1)
        starts[TopicPartition(topic, int(partition))] = offset
    if not starts:
        return set()
    ends = consumer.end_offsets(list(starts))
    pending = {tp: ends[tp] for tp, offset in starts.items() if offset < ends[tp]}
    if not pending:
        return set()
    reassign(consumer, list(pending))
    for tp in pending:
        consumer.seek(tp, starts[tp])
    found: set[str] = set()
    empty_polls = 0
    while pending and empty_polls < 30:
        batches = poll_records(consumer, 1000)
        empty_polls = 0 if batches else empty_polls + 1
        for tp, records in batches.items():
            for raw in records:
                if raw.offset >= pending.get(tp, 0):
                    break
                headers = list(raw.headers)
                if header_value(headers, REPLAY_ID) == replay_id:
                    original = header_value(headers, REPLAY_OF)
                    if original:
                        found.add(original)
            if tp in pending and consumer.position(tp) >= pending[tp]:
                del pending[tp]
    return found
