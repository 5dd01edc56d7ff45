"""What to replay: a `Selection` from the command line, resolved to offsets, then scanned.

1. `Selection` holds what the user asked for, with times already absolute
   (milliseconds), so a stored selection means the same thing when resumed.
2. `plan(selection, consumer)` turns it into one `PartitionPlan` per partition:
   `[start, stop)` from `--from/--to` (Kafka offsets-for-times), explicit
   `topic:partition:start-end` ranges, and the end offsets captured *now*, so a
   scan never chases records produced after it started (a re-drive into the
   topic it reads from included).
3. `replay.fastscan.scan_fast(plans, selection, ...)` reads those ranges with
   `assign` (no consumer group, nothing committed) and yields the `ReplayRecord`s
   that pass the key / trace / op / filter criteria (`matches_raw`, `matches` here).
   Records that no longer decode are yielded too, with `decode_error` set, so
   callers count them as `undecodable`.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from base.contracts import headers, traceids
from base.errors import ServiceUnavailable
from replay.exceptions import EmptySelection, ReplayError, SelectionError
from replay.filterexpr import Filter, compile_filter
from replay.record import ReplayRecord
from replay.timespec import format_millis, parse_time, to_millis

STACK_HINT = "start the stack (`labstream stack up`) or set LABSTREAM_KAFKA_BOOTSTRAP_SERVERS"
REPLAY_ID_HEADER = headers.REPLAY_ID
REPLAY_OF_HEADER = headers.REPLAY_OF
OPS = ("c", "u", "d", "r", "t", "m")
_RANGE = re.compile(r"^(?P<topic>.+):(?P<partition>\d+):(?P<start>\d+)?(?:-(?P<end>\d+)?)?$")


@dataclass(frozen=True)
class PartitionRange:
    """`topic:partition:start-end`, offsets inclusive; `start-` = to the end, `N` = one."""

    topic: str
    partition: int
    start: int
    end: int | None  # inclusive; None = up to the end offset captured at start

    @classmethod
    def parse(cls, text: str) -> PartitionRange:
        match = _RANGE.match(text.strip())
        if not match or match.group("start") is None:
            raise SelectionError(
                f"--offsets {text!r} is not topic:partition:start-end",
                hint="e.g. --offsets lab.public.runs:0:120-180, "
                "lab.public.runs:2:500- (to the end) or lab.public.runs:1:42 (one record)",
            )
        start = int(match.group("start"))
        has_dash = "-" in text.rsplit(":", 1)[1]
        end = int(match.group("end")) if match.group("end") else (None if has_dash else start)
        if end is not None and end < start:
            raise SelectionError(
                f"--offsets {text!r} ends before it starts",
                hint="write start-end with start <= end",
            )
        return cls(match.group("topic"), int(match.group("partition")), start, end)

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.start}-{'' if self.end is None else self.end}"

    def holds(self, offset: int) -> bool:
        return self.start <= offset and (self.end is None or offset <= self.end)


@dataclass(frozen=True)
class Selection:
    topics: tuple[str, ...] = ()
    from_ms: int | None = None
    to_ms: int | None = None
    ranges: tuple[PartitionRange, ...] = ()
    keys: tuple[str, ...] = ()
    trace_id: str | None = None
    ops: tuple[str, ...] = ()
    filter_text: str | None = None
    limit: int | None = None
    # records produced by an earlier replay (labstream-replay-id header) are left out by
    # default: running the same selection twice must select the same originals
    include_replays: bool = False
    _compiled: Filter | None = field(default=None, compare=False, repr=False)

    @property
    def all_topics(self) -> tuple[str, ...]:
        named = list(self.topics) + [r.topic for r in self.ranges if r.topic not in self.topics]
        return tuple(dict.fromkeys(named))

    def ranges_of(self, topic: str, partition: int) -> tuple[PartitionRange, ...]:
        return tuple(r for r in self.ranges if r.topic == topic and r.partition == partition)

    def offset_wanted(self, topic: str, partition: int, offset: int) -> bool:
        """With several --offsets for one partition the scan reads from the first start to
        the last end; only offsets inside one of the ranges are selected."""
        if not self.ranges:  # the common case, checked per record: no tuple built
            return True
        ranges = self.ranges_of(topic, partition)
        return not ranges or any(r.holds(offset) for r in ranges)

    @property
    def compiled_filter(self) -> Filter | None:
        if self.filter_text and self._compiled is None:
            object.__setattr__(self, "_compiled", compile_filter(self.filter_text))
        return self._compiled

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_compiled")
        data["ranges"] = [str(item) for item in self.ranges]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Selection:
        return cls(
            topics=tuple(data.get("topics") or ()),
            from_ms=data.get("from_ms"),
            to_ms=data.get("to_ms"),
            ranges=tuple(PartitionRange.parse(text) for text in data.get("ranges") or ()),
            keys=tuple(data.get("keys") or ()),
            trace_id=data.get("trace_id"),
            ops=tuple(data.get("ops") or ()),
            filter_text=data.get("filter_text"),
            limit=data.get("limit"),
            include_replays=bool(data.get("include_replays")),
        )

    def describe(self) -> str:
        parts = [f"topics={','.join(self.all_topics)}"]
        if self.from_ms is not None or self.to_ms is not None:
            parts.append(f"window={format_millis(self.from_ms)}..{format_millis(self.to_ms)}")
        parts += [f"offsets={r}" for r in self.ranges]
        if self.keys:
            parts.append(f"key={','.join(self.keys)}")
        if self.trace_id:
            parts.append(f"trace={self.trace_id}")
        if self.ops:
            parts.append(f"op={','.join(self.ops)}")
        if self.filter_text:
            parts.append(f"filter={self.filter_text!r}")
        if self.include_replays:
            parts.append("include-replays")
        return " ".join(parts)


def build_selection(
    *,
    topics: Sequence[str] = (),
    from_text: str | None = None,
    to_text: str | None = None,
    offsets: Sequence[str] = (),
    keys: Sequence[str] = (),
    trace_id: str | None = None,
    ops: Sequence[str] = (),
    filter_text: str | None = None,
    limit: int | None = None,
    include_replays: bool = False,
    now: Any = None,
) -> Selection:
    """A checked `Selection` from command-line values; every error names its option."""
    ranges = tuple(PartitionRange.parse(text) for text in offsets)
    if not topics and not ranges:
        raise SelectionError(
            "no topic selected", hint="add --topic lab.public.runs (repeatable) or --offsets"
        )
    from_ms = to_millis(parse_time(from_text, option="--from", now=now)) if from_text else None
    to_ms = to_millis(parse_time(to_text, option="--to", now=now)) if to_text else None
    if from_ms is not None and to_ms is not None and to_ms < from_ms:
        raise SelectionError(
            f"--to ({format_millis(to_ms)}) is before --from ({format_millis(from_ms)})",
            hint="swap them, or give --to a later time",
        )
    op_list = tuple(dict.fromkeys(o.strip().lower() for text in ops for o in text.split(",") if o))
    unknown_ops = [o for o in op_list if o not in OPS]
    if unknown_ops:
        raise SelectionError(
            f"--op {','.join(unknown_ops)} is not a Debezium op",
            hint="use c (create), u (update), d (delete), r (snapshot read), t (truncate), m",
        )
    normalized_trace = traceids.trace_id_of(trace_id) if trace_id else None
    if trace_id and normalized_trace is None:
        raise SelectionError(f"--trace {trace_id!r} is not a trace id", hint=traceids.FORMS_HINT)
    if limit is not None and limit <= 0:
        raise SelectionError(f"--limit {limit} must be positive", hint="e.g. --limit 100")
    selection = Selection(
        topics=tuple(dict.fromkeys(topics)),
        from_ms=from_ms,
        to_ms=to_ms,
        ranges=ranges,
        keys=tuple(keys),
        trace_id=normalized_trace,
        ops=op_list,
        filter_text=filter_text or None,
        limit=limit,
        include_replays=include_replays,
    )
    selection.compiled_filter  # noqa: B018 - parse now so a bad filter fails before any I/O
    return selection


# -- offsets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionPlan:
    """Read `[start, stop)` of one partition; `stop` is fixed when the replay starts."""

    topic: str
    partition: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return max(self.stop - self.start, 0)

    def to_json(self) -> list[Any]:
        return [self.topic, self.partition, self.start, self.stop]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> PartitionPlan:
        return cls(str(data[0]), int(data[1]), int(data[2]), int(data[3]))


def resolve_topics(requested: Iterable[str], existing: Iterable[str]) -> list[str]:
    """Exact names and globs (`lab.public.*`) against the cluster's topics."""
    available = sorted(existing)
    resolved: list[str] = []
    for name in requested:
        if any(ch in name for ch in "*?["):
            matched = fnmatch.filter(available, name)
        else:
            matched = [name] if name in available else []
        if not matched:
            near = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
            hint = (
                f"did you mean {', '.join(near)}?"
                if near
                else "list topics with `labstream replay topics` or check the connector's prefix"
            )
            raise SelectionError(f"topic {name!r} does not exist", hint=hint)
        resolved += [m for m in matched if m not in resolved]
    return resolved


def plan(selection: Selection, consumer: Any) -> list[PartitionPlan]:
    """One `PartitionPlan` per partition of the selected topics, empty ranges dropped.

    `--topic` takes every partition of a topic; `--offsets` takes one partition
    (and narrows it when its topic was also given with `--topic`).
    """
    from kafka import TopicPartition

    existing = consumer.topics()
    whole_topics = resolve_topics(selection.topics, existing)
    range_topics = resolve_topics([r.topic for r in selection.ranges], existing)
    # several --offsets of one partition: read their hull, `matches_raw` keeps each range
    explicit = {(r.topic, r.partition): _hull(selection.ranges_of(r.topic, r.partition))
                for r in selection.ranges}
    partitions = [
        TopicPartition(topic, number)
        for topic in dict.fromkeys(whole_topics + range_topics)
        for number in sorted(consumer.partitions_for_topic(topic) or ())
        if topic in whole_topics or (topic, number) in explicit
    ]
    for topic, number in explicit:
        if TopicPartition(topic, number) not in partitions:
            raise SelectionError(
                f"--offsets: topic {topic!r} has no partition {number}",
                hint=f"it has partitions {sorted(consumer.partitions_for_topic(topic) or ())}",
            )
    first = consumer.beginning_offsets(partitions)
    end = consumer.end_offsets(partitions)
    starts = _time_offsets(consumer, partitions, selection.from_ms, first, end)
    stops = _time_offsets(consumer, partitions, _after(selection.to_ms), end, end)
    plans = []
    for tp in partitions:
        start, stop = max(starts[tp], first[tp]), stops[tp]
        wanted = explicit.get((tp.topic, tp.partition))
        if wanted is not None:
            start = max(start, wanted.start)
            stop = min(stop, end[tp] if wanted.end is None else wanted.end + 1)
        plans.append(PartitionPlan(tp.topic, tp.partition, start, max(stop, start)))
    windowed = selection.from_ms is not None or selection.to_ms is not None
    if windowed and not any(item.size for item in plans):
        raise _empty_window(selection, consumer, partitions, first, end)
    return [item for item in plans if item.size]


def _hull(ranges: Sequence[PartitionRange]) -> PartitionRange:
    ends = [r.end for r in ranges]
    end = None if None in ends else max(e for e in ends if e is not None)
    return PartitionRange(ranges[0].topic, ranges[0].partition, min(r.start for r in ranges), end)


def _after(to_ms: int | None) -> int | None:
    return None if to_ms is None else to_ms + 1


def _time_offsets(
    consumer: Any, partitions: list[Any], millis: int | None, default: dict, end: dict
) -> dict:
    """Earliest offset whose timestamp is >= millis, per partition (none -> end offset)."""
    if millis is None:
        return dict(default)
    found = consumer.offsets_for_times({tp: millis for tp in partitions})
    return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in partitions}


def _empty_window(
    selection: Selection, consumer: Any, partitions: list[Any], first: dict, end: dict
) -> EmptySelection:
    window = f"{format_millis(selection.from_ms)} .. {format_millis(selection.to_ms)}"
    bounds = []
    for topic in dict.fromkeys(tp.topic for tp in partitions):
        own = [tp for tp in partitions if tp.topic == topic]
        oldest, newest = _timestamp_bounds(consumer, own, first, end)
        if oldest is None:
            bounds.append(f"{topic} is empty")
        else:
            bounds.append(f"{topic} holds {format_millis(oldest)} .. {format_millis(newest)}")
    return EmptySelection(
        f"no record in the window --from/--to {window}: {'; '.join(bounds)}",
        hint="widen --from/--to to overlap the topic's data (relative times like -2h are UTC-safe)",
    )


def _timestamp_bounds(
    consumer: Any, partitions: list[Any], first: dict, end: dict
) -> tuple[int | None, int | None]:
    """Timestamps of the first and last record across `partitions` (reads 2 per partition)."""
    stamps: list[int] = []
    for tp in partitions:
        if end[tp] <= first[tp]:
            continue
        for offset in {first[tp], end[tp] - 1}:
            record = _read_one(consumer, tp, offset)
            if record is not None:
                stamps.append(record.timestamp)
    return (min(stamps), max(stamps)) if stamps else (None, None)


def reassign(consumer: Any, partitions: list[Any]) -> None:
    """Assign `partitions` afresh: drop what an earlier scan left (paused partitions,
    fetched-but-unread records), which otherwise starves a partition read again."""
    consumer.unsubscribe()
    consumer.assign(partitions)
    consumer.resume(*partitions)


def _read_one(consumer: Any, tp: Any, offset: int) -> Any:
    reassign(consumer, [tp])
    consumer.seek(tp, offset)
    for _ in range(10):
        for records in consumer.poll(timeout_ms=500, max_records=1).values():
            return records[0]
    return None


# -- scan -----------------------------------------------------------------------------------


@dataclass
class ScanStats:
    """What a scan read: `scanned` records in the ranges, `matched` passed the criteria
    (`undecodable` of those could not be decoded and were matched on raw bytes/headers)."""

    planned: int = 0
    scanned: int = 0
    matched: int = 0
    undecodable: int = 0
    # records left out because an earlier replay produced them (no --include-replays),
    # and the original the first of them is a copy of: what to select instead
    replays_left_out: int = 0
    replay_of: str | None = None
    # (topic, partition) -> last offset scanned: every record up to it has been
    # yielded to (and handled by) the caller or did not match
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


def poll_records(consumer: Any, timeout_ms: int) -> dict:
    from kafka.errors import KafkaError, UnsupportedCodecError

    try:
        return consumer.poll(timeout_ms=timeout_ms, max_records=2000)
    except UnsupportedCodecError as exc:
        raise ReplayError(
            f"cannot read the topic: {exc}",
            hint="install the codec's package into the venv (lz4, python-snappy or zstandard)",
        ) from exc
    except KafkaError as exc:
        raise ServiceUnavailable(f"reading from Kafka failed: {exc}", hint=STACK_HINT) from exc


def matches_raw(record: ReplayRecord, selection: Selection) -> bool:
    """The criteria that need no decoding (checked first: decoding is the cost)."""
    if not selection.offset_wanted(record.topic, record.partition, record.offset):
        return False
    if selection.from_ms is not None and record.timestamp < selection.from_ms:
        return False
    if selection.to_ms is not None and record.timestamp > selection.to_ms:
        return False
    if selection.trace_id and record.trace_id != selection.trace_id:
        return False
    return selection.include_replays or record.header(REPLAY_ID_HEADER) is None


def count_left_out_replay(record: ReplayRecord, selection: Selection, stats: ScanStats) -> None:
    """Count a record dropped only for being a replay's copy, so the CLI can say so."""
    if selection.include_replays or record.header(REPLAY_ID_HEADER) is None:
        return
    if not matches_raw(record, replace(selection, include_replays=True)):
        return
    stats.replays_left_out += 1
    original = record.header(REPLAY_OF_HEADER)
    if stats.replay_of is None and original is not None:
        stats.replay_of = original.decode("utf-8", "replace")


def matches(record: ReplayRecord, selection: Selection, *, filter_passed: bool = False) -> bool:
    """The criteria on a decoded record: key, op, filter (after `matches_raw`).

    `filter_passed`: the scan's pre-filter found the filter true on this value's fields
    already (the same fields decoded the same way), so it is not evaluated again."""
    if selection.keys and not any(record.key_matches(key) for key in selection.keys):
        return False
    if record.decode_error is not None:
        # op and filter need the value; the record is kept so it is counted, not hidden
        return True
    if selection.ops and record.op not in selection.ops:
        return False
    compiled = selection.compiled_filter
    return compiled is None or filter_passed or compiled.matches(record.envelope())
