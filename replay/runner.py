"""Orchestration shared by the CLI and the tests: open clients, plan, scan, re-drive, resume.

Nothing here prints: progress goes to an `on_progress` callback, questions to a
`confirm` callback, so the CLI owns the terminal and tests own nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from base.db import connect
from base.errors import LabstreamError
from replay import store
from replay.decode import EnvelopeDecoder, decoder_from_settings
from replay.exceptions import ReplayStateError, SelectionError
from replay.fastscan import scan_fast
from replay.kafka import ensure_topic, open_consumer, open_producer, partition_count
from replay.offsets import LibrdkafkaOffsets
from replay.record import Decoder, ReplayRecord
from replay.redrive import Redrive, RedriveOptions, find_already_produced, resume_plans
from replay.selection import PartitionPlan, ScanStats, Selection, plan

PRODUCTION_PREFIX = "lab."
SAFE_PREFIX = "replay."

ProgressCallback = Callable[[store.ReplayRow, ScanStats], None]
ConfirmCallback = Callable[[int, list[str]], bool]


def with_batching(options: RedriveOptions) -> RedriveOptions:
    """Options with the checkpoint cadence from LABSTREAM_REPLAY_BATCH_*."""
    from dataclasses import replace

    from replay.settings import ReplaySettings

    settings = ReplaySettings()
    return replace(options, batch_size=settings.batch_size, batch_seconds=settings.batch_seconds)


def is_production_topic(topic: str) -> bool:
    """`lab.*` topics feed the live agents; `replay.*` (and test topics) do not."""
    return topic.startswith(PRODUCTION_PREFIX) and not topic.startswith(SAFE_PREFIX)


@dataclass
class Session:
    """The clients one replay command uses; `close()` them (or use `with`)."""

    bootstrap: str | None = None
    database_url: str | None = None
    decoder: Decoder | None = None
    consumer: Any = None
    _offsets: LibrdkafkaOffsets | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.consumer = self.consumer or open_consumer(self.bootstrap)
        if self.decoder is None:
            self.decoder = decoder_from_settings(self.database_url)

    @property
    def offsets(self) -> Any:
        """What `selection.plan` asks (topics, partitions, offsets) answered by librdkafka
        (`replay.offsets`: ≈ 100 ms less per question than `self.consumer`)."""
        if self._offsets is None:
            self._offsets = LibrdkafkaOffsets(self.consumer, self.bootstrap)
        return self._offsets

    def scan(
        self, plans: list[PartitionPlan], selection: Selection, stats: ScanStats | None = None
    ) -> Iterator[ReplayRecord]:
        """The matching records of `plans` (`replay.fastscan`: librdkafka, a reader of its
        own per scan, closed when the scan ends; `self.consumer` answers metadata and
        offset questions)."""
        assert self.decoder is not None
        # the generator itself, not `yield from` it: one frame less per record read
        return scan_fast(plans, selection, self.decoder, self.bootstrap, stats=stats)

    def close(self) -> None:
        if self._offsets is not None:
            with contextlib.suppress(Exception):
                self._offsets.close()
        with contextlib.suppress(Exception):
            self.consumer.close()
        registry = getattr(getattr(self.decoder, "avro", None), "registry", None)
        if registry is not None and hasattr(registry, "close"):
            with contextlib.suppress(Exception):
                registry.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Scan:
    """A planned scan: iterate `records()`, then read `stats`."""

    session: Session
    selection: Selection
    plans: list[PartitionPlan]
    stats: ScanStats = field(default_factory=ScanStats)

    def records(self) -> Iterator[ReplayRecord]:
        assert self.session.decoder is not None
        return self.session.scan(self.plans, self.selection, self.stats)


def start_scan(session: Session, selection: Selection) -> Scan:
    return Scan(session, selection, plan(selection, session.offsets))


def count_matches(session: Session, selection: Selection) -> ScanStats:
    scan_ = start_scan(session, selection)
    for _ in scan_.records():
        pass
    return scan_.stats


def target_topics(selection_topics: list[str], options: RedriveOptions) -> list[str]:
    return [options.target_topic] if options.target_topic else selection_topics


def execute(
    session: Session,
    selection: Selection,
    options: RedriveOptions,
    *,
    yes: bool = False,
    confirm: ConfirmCallback | None = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[store.ReplayRow], None] | None = None,
) -> tuple[store.ReplayRow, Redrive]:
    """Plan, confirm if production topics are hit, record the replay, re-drive it."""
    plans = plan(selection, session.offsets)
    source_topics = list(dict.fromkeys(item.topic for item in plans))
    targets = target_topics(source_topics, options)
    production = [topic for topic in targets if is_production_topic(topic)]
    if production and not yes:
        counted = count_matches(session, selection)
        if confirm is None or not confirm(counted.matched - counted.undecodable, production):
            raise SelectionError(
                f"not replaying into production topics {', '.join(production)} without consent",
                hint="add --yes, or use --target-topic replay.<name> to try it safely first",
            )
    if options.target_topic:
        widest = max((partition_count(session.consumer, t) for t in source_topics), default=1)
        ensure_topic(session.bootstrap, options.target_topic, widest)
        _wait_for_metadata(session.consumer, options.target_topic)
    conn = connect(session.database_url)
    try:
        row = store.ReplayRow(
            id=store.new_replay_id(),
            mode="execute",
            selection=selection.to_json(),
            plan=[item.to_json() for item in plans],
            target=options.target_topic,
            options=_options_json(options),
            total=planned_total(plans, selection),
            target_positions=_end_positions(session.consumer, targets),
        )
        row = store.create(conn, row)
        store.lock(conn, row.id)
        if on_start is not None:
            on_start(row)
        return _drive(session, conn, row, selection, plans, options, set(), on_progress)
    finally:
        conn.close()


def resume(
    session: Session,
    replay_id: str,
    *,
    rate: float | None = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[store.ReplayRow], None] | None = None,
) -> tuple[store.ReplayRow, Redrive]:
    """Continue a re-drive after its last checkpoint, skipping what already reached Kafka."""
    conn = connect(session.database_url)
    try:
        row = store.get(conn, replay_id)
        if row.mode != "execute":
            raise ReplayStateError(
                f"replay {replay_id} was a dry run: nothing to resume",
                hint="run it again with `labstream replay run ... --execute`",
            )
        if row.status == "succeeded":
            raise ReplayStateError(
                f"replay {replay_id} already finished ({row.produced} records produced)",
                hint="start a new replay with `labstream replay run` if you want them again",
            )
        store.lock(conn, row.id)
        selection = Selection.from_json(row.selection)
        options = with_batching(
            RedriveOptions(
                target_topic=row.target,
                rate=rate if rate is not None else row.options.get("rate"),
                rerun_succeeded=bool(row.options.get("rerun_succeeded")),
            )
        )
        reader = open_consumer(session.bootstrap)
        try:
            found = find_already_produced(reader, row.id, row.target_positions)
        finally:
            reader.close()
        plans = resume_plans((PartitionPlan.from_json(p) for p in row.plan), row.progress)
        store.mark_running(conn, row)
        if on_start is not None:
            on_start(row)
        return _drive(session, conn, row, selection, plans, options, found, on_progress)
    finally:
        conn.close()


def _drive(
    session: Session,
    conn: Any,
    row: store.ReplayRow,
    selection: Selection,
    plans: list[PartitionPlan],
    options: RedriveOptions,
    already_produced: set[str],
    on_progress: ProgressCallback | None,
) -> tuple[store.ReplayRow, Redrive]:
    stats = ScanStats(
        planned=row.done, scanned=row.done, matched=row.matched, undecodable=row.undecodable
    )
    assert session.decoder is not None
    records = session.scan(plans, selection, stats)
    producer = open_producer(session.bootstrap)
    redrive = Redrive(
        row=row,
        options=options,
        producer=producer,
        conn=conn,
        partitions_of=lambda topic: partition_count(session.consumer, topic),
        already_produced=already_produced,
        on_progress=on_progress,
    )
    try:
        redrive.run(records, stats)
    except KeyboardInterrupt:
        _stop(
            conn, row, "interrupted", "interrupted by the user (Ctrl-C)", producer, redrive, stats
        )
        raise
    except LabstreamError as exc:
        _stop(conn, row, "failed", exc.message, producer, redrive, stats)
        raise
    store.finish(conn, row, "succeeded")
    return row, redrive


def _stop(
    conn: Any,
    row: store.ReplayRow,
    status: str,
    error: str,
    producer: Any,
    redrive: Redrive,
    stats: ScanStats,
) -> None:
    """Record what is durable, then the status; never let this hide the original error."""
    with contextlib.suppress(Exception):
        producer.flush(10)  # what got acknowledged can be recorded...
    with contextlib.suppress(Exception):
        if not redrive.deliveries.errors:  # ...but only if every record of the batch was
            redrive.checkpoint(stats, interrupted=True)
    with contextlib.suppress(Exception):
        store.finish(conn, row, status, error)


def _wait_for_metadata(consumer: Any, topic: str, attempts: int = 20) -> None:
    """A topic created a moment ago: refresh metadata until the consumer knows its partitions."""
    import time

    for _ in range(attempts):
        consumer.topics()  # refreshes the cluster metadata
        if consumer.partitions_for_topic(topic):
            return
        time.sleep(0.25)


def planned_total(plans: list[PartitionPlan], selection: Selection) -> int:
    """What the re-drive will really read: the planned ranges, or --limit when smaller
    (the progress bar's total; a bar against the whole partition never finished)."""
    total = sum(item.size for item in plans)
    return min(total, selection.limit) if selection.limit is not None else total


def _options_json(options: RedriveOptions) -> dict[str, Any]:
    return {"rate": options.rate, "rerun_succeeded": options.rerun_succeeded}


def _end_positions(consumer: Any, topics: list[str]) -> dict[str, int]:
    """Current end offsets of the target partitions: where this replay's records will start."""
    from kafka import TopicPartition

    partitions = [
        TopicPartition(topic, number)
        for topic in topics
        for number in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    ends = consumer.end_offsets(partitions) if partitions else {}
    return {f"{tp.topic}/{tp.partition}": offset for tp, offset in ends.items()}


__all__ = ["EnvelopeDecoder", "Session", "execute", "is_production_topic", "resume", "start_scan"]
