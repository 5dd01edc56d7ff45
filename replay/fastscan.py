"""The scan's reading loop on librdkafka (confluent-kafka) instead of kafka-python.

`selection.scan` with kafka-python spent half of a scan's time in kafka-python's
pure-Python record parsing and in its fetch waits (docs/BENCHMARKS.md, "Replay");
librdkafka parses batches in C and prefetches while Python decodes. Same contract as
`selection.scan`: the matching records of `plans` in offset order per partition,
`stats` (scanned, matched, undecodable, positions) kept as it goes, `--limit` honoured,
and an error naming the partitions when reading stops making progress.

The consumer only `assign`s (no group join, nothing committed: `group.id` is a
librdkafka formality here) and is closed when the scan ends.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from base.errors import ServiceUnavailable
from base.kafka import kafka_connection
from replay.exceptions import ReplayError
from replay.kafka import STACK_HINT, bootstrap_servers
from replay.record import Decoder, ReplayRecord
from replay.selection import (
    REPLAY_ID_HEADER,
    PartitionPlan,
    ScanStats,
    Selection,
    count_left_out_replay,
    matches,
    matches_raw,
)

BATCH = 5000


def open_reader(bootstrap: str | None, overrides: Mapping[str, Any] | None = None) -> Any:
    from confluent_kafka import Consumer

    return Consumer({
        **kafka_connection(bootstrap_servers(bootstrap)).librdkafka("replay"),
        "group.id": "labstream-replay-scan",  # required by librdkafka; never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "check.crcs": False,  # the broker verified them; the scan is the hot path
        "fetch.wait.max.ms": 50,  # a bounded range already written: do not wait for more
        "queued.max.messages.kbytes": 65536,
        "enable.partition.eof": True,
        **(overrides or {}),
    })


def scan_fast(
    plans: Sequence[PartitionPlan],
    selection: Selection,
    decoder: Decoder,
    bootstrap: str | None,
    *,
    stats: ScanStats | None = None,
    idle_polls: int = 30,
) -> Iterator[ReplayRecord]:
    """Yield the matching records of `plans` (see the module docstring)."""
    from confluent_kafka import KafkaError, TopicPartition

    counters = stats if stats is not None else ScanStats()
    remaining = {(p.topic, p.partition): p for p in plans if p.size}
    counters.planned += sum(p.size for p in remaining.values())
    if not remaining:
        return
    consumer = open_reader(bootstrap)
    # in this generator itself, not a wrapper's `yield from`: one frame less per record
    spaced = _space_young_collections()
    try:
        prefilter = _raw_prefilter(selection, decoder)
        # without --offsets/--from/--to/--trace, `matches_raw` only looks at the headers
        quick = not (selection.ranges or selection.from_ms is not None
                     or selection.to_ms is not None or selection.trace_id)
        consumer.assign([TopicPartition(t, p, item.start) for (t, p), item in remaining.items()])
        # `matches` is True without being called: with no --key and no --op, when there
        # is no --filter either, or when the pre-filter found it true
        no_decoded_criteria = not selection.keys and not selection.ops
        always = no_decoded_criteria and selection.compiled_filter is None
        is_copy = _ReplayCopyCheck()  # per scan: the header names seen, looked up once each
        positions, limit = counters.positions, selection.limit
        empty = 0
        while remaining and empty < idle_polls:
            # consume() returns when it has this many or after the timeout: asking for
            # more than the plan still holds waited out the whole second on every scan's
            # last batch (and on any --limit that ends a scan early)
            wanted = max(1, min(BATCH, still_planned(remaining, positions)))
            messages = consumer.consume(wanted, timeout=1.0)
            empty = 0 if messages else empty + 1
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue  # caught up; the plan's stop says when a partition is done
                    raise ServiceUnavailable(f"reading from Kafka failed: {error.str()}",
                                             hint=STACK_HINT)
                where = (message.topic(), message.partition())
                item = remaining.get(where)
                if item is None:
                    continue
                offset = message.offset()
                if offset >= item.stop:
                    _done(consumer, remaining, where)
                    continue
                counters.scanned += 1
                positions[where] = offset
                if offset + 1 >= item.stop:
                    _done(consumer, remaining, where)
                headers = message.headers()
                if quick:  # matches_raw is "not a replay's copy" only: no record built yet
                    if headers and not selection.include_replays and is_copy(headers):
                        count_left_out_replay(_record(message, where, offset, headers),
                                              selection, counters)
                        continue
                    record = None
                else:
                    record = _record(message, where, offset, headers)
                    if not matches_raw(record, selection):
                        count_left_out_replay(record, selection, counters)
                        continue
                verdict = UNKNOWN
                if prefilter is not None:
                    verdict = prefilter(message.value(), where, offset, message)
                    if verdict is DROP:
                        continue
                if record is None:
                    record = _record(message, where, offset, headers)
                record.decode(decoder)
                passed = verdict is PASSED
                if not (always or (passed and no_decoded_criteria)
                        or matches(record, selection, filter_passed=passed)):
                    continue
                counters.matched += 1
                if record.decode_error is not None:
                    counters.undecodable += 1
                yield record
                if limit is not None and counters.matched >= limit:
                    return
        if remaining:
            stuck = ", ".join(f"{t}/{p} (planned up to {item.stop})"
                              for (t, p), item in remaining.items())
            raise ReplayError(
                f"reading stopped making progress ({idle_polls} empty polls): {stuck}",
                hint="check `labstream stack status`; a re-drive can be continued with "
                "`labstream replay resume <id>`",
            )
    finally:
        _put_back_young_collections(spaced)
        consumer.close()


# the young generation's collection threshold during a scan (Python's default: 700)
SCAN_GC_THRESHOLD = 50_000


@contextlib.contextmanager
def _young_collections_spaced(threshold: int = SCAN_GC_THRESHOLD) -> Iterator[None]:
    """`_space_young_collections` ... `_put_back_young_collections` as a `with` block."""
    spaced = _space_young_collections(threshold)
    try:
        yield
    finally:
        _put_back_young_collections(spaced)


def _space_young_collections(
        threshold: int = SCAN_GC_THRESHOLD) -> tuple[int, tuple[int, ...]] | None:
    """Young-generation collections spaced out while a scan reads, put back after.

    librdkafka hands over each batch as up to `BATCH` `Message` objects the collector
    tracks; with collections every 700 allocations, those still waiting in the batch
    survive them into the older generations, which are then collected again and again:
    GC took a quarter to 40 % of a 100,000-record scan's CPU (611 to 950 ms over two
    scans, counted with `gc.callbacks`; docs/BENCHMARKS.md, "Session 5: replay speed").
    At 50,000, a collection comes every ten batches or so and finds one batch alive.
    Collections still happen (unlike the dry run's full pause, `replay.dryrun._gc_paused`),
    so a caller that leaves a scan unfinished for long loses nothing but this speed-up.
    Only a threshold this raised is put back (nested or interleaved scans): returns
    (threshold set, thresholds before) for `_put_back_young_collections`, or None.
    """
    old = gc.get_threshold()
    if old[0] >= threshold:
        return None
    gc.set_threshold(threshold, *old[1:])
    return threshold, old


def _put_back_young_collections(spaced: tuple[int, tuple[int, ...]] | None) -> None:
    """The thresholds as before `_space_young_collections`, unless changed meanwhile."""
    if spaced is not None and gc.get_threshold()[0] == spaced[0]:
        gc.set_threshold(*spaced[1])


def still_planned(remaining: Mapping[tuple[str, int], PartitionPlan],
                  positions: Mapping[tuple[str, int], int]) -> int:
    """How many records the unfinished partitions' plans still hold (an upper bound of
    what is left to read: offsets may have gaps)."""
    total = 0
    for where, item in remaining.items():
        total += item.stop - max(item.start, positions.get(where, item.start - 1) + 1)
    return total


_EXTRAS = ("topic", "partition", "offset", "timestamp")  # what `envelope()` adds
# the pre-filter's verdicts: the filter is false / true on the value / not known here
DROP, PASSED, UNKNOWN = "drop", "passed", "unknown"
RawPrefilter = Callable[[bytes | None, tuple[str, int], int, Any], str]


def _raw_prefilter(selection: Selection, decoder: Decoder) -> RawPrefilter | None:
    """`--filter` tested on the value's fields it names only, before the full decode.

    A record the filter rejects this way is rejected by the full test too (same
    fields, same values), so only the decoding of rejected records is saved: the
    value's other fields are skipped, not built (about half the decode of a CDC
    envelope); and for a record it keeps (`PASSED`), the full test need not run the
    filter again. With `key` in the filter, or a decoder without `decode_fields`,
    there is no pre-filter. A record whose pre-filter decode fails is `UNKNOWN`: the
    full test decides, and reports it undecodable. Skipped text is still checked as
    UTF-8 (`streams.avrodecode`), so a projection fails where a full decode fails.

    The returned function takes `(value bytes, (topic, partition), offset, message)`;
    the message is only asked for its timestamp, when the filter names `timestamp`.
    """
    compiled = selection.compiled_filter
    decode_fields = getattr(decoder, "decode_fields", None)
    if compiled is None or decode_fields is None or "key" in compiled.names:
        return None
    fields = frozenset(compiled.names)
    extras = any(name in compiled.names for name in _EXTRAS)
    evaluate = compiled.evaluator  # `compiled.matches` without its call
    # framed Avro straight to the projected reader of its schema, kept here by the 5
    # framing bytes (what EnvelopeDecoder.decode_fields does for it, minus three calls);
    # any failure is UNKNOWN either way
    fields_reader = getattr(getattr(decoder, "avro", None), "fields_reader", None)
    readers: dict[bytes, Any] = {}

    def verdict(value_bytes: bytes | None, where: tuple[str, int], offset: int,
                message: Any) -> str:
        if value_bytes is None:
            return UNKNOWN  # a tombstone: the full test decides
        try:
            if fields_reader is not None and value_bytes[:1] == b"\x00":
                reader = readers.get(value_bytes[:5])
                if reader is None:
                    reader = readers[value_bytes[:5]] = fields_reader(value_bytes, fields)
                value = reader(value_bytes, 5)[0]
            else:
                value = decode_fields(where[0], value_bytes, fields)
        except Exception:  # the full decode reports it
            return UNKNOWN
        if type(value) is not dict:
            if not isinstance(value, Mapping):
                return UNKNOWN
            value = dict(value)
        if extras:  # a fresh dict from the decoder: completed in place, as envelope() does
            for name, extra in zip(_EXTRAS, (where[0], where[1], offset,
                                             message.timestamp()[1]), strict=True):
                value.setdefault(name, extra)
        return PASSED if evaluate(value) else DROP

    return verdict


def _prefilter(selection: Selection, decoder: Decoder) -> Callable[[ReplayRecord], bool] | None:
    """The pre-filter on a `ReplayRecord`: False where the full test would drop it."""
    raw = _raw_prefilter(selection, decoder)
    if raw is None:
        return None

    class _Stamp:
        def __init__(self, timestamp: int) -> None:
            self._timestamp = timestamp

        def timestamp(self) -> tuple[int, int]:
            return (0, self._timestamp)

    def wanted(record: ReplayRecord) -> bool:
        return raw(record.value_bytes, (record.topic, record.partition), record.offset,
                   _Stamp(record.timestamp)) is not DROP

    return wanted


class _ReplayCopyCheck:
    """Whether a `labstream-replay-id` header is there (`record.header(...)`'s rule: names
    compared lowercased), each header name's answer kept: a topic's records carry the
    same few names, so `name.lower()` runs once per name per scan, not per record."""

    __slots__ = ("_known",)
    LIMIT = 1024  # distinct names kept; past it the cache starts over

    def __init__(self) -> None:
        self._known: dict[str, bool] = {}

    def __call__(self, headers: list[tuple[str, Any]]) -> bool:
        known = self._known
        for name, _ in headers:
            answer = known.get(name)
            if answer is None:
                if len(known) >= self.LIMIT:
                    known.clear()
                answer = known[name] = name == REPLAY_ID_HEADER or \
                    name.lower() == REPLAY_ID_HEADER
            if answer:
                return True
        return False


def _record(message: Any, where: tuple[str, int], offset: int,
            headers: list[tuple[str, bytes | None]] | None) -> ReplayRecord:
    if headers:  # a header without a value is kept as b"" (`ReplayRecord.from_consumer`)
        for _, value in headers:
            if value is None:
                headers = [(name, b"" if value is None else value) for name, value in headers]
                break
    else:
        headers = []
    # positional, in the field order of `ReplayRecord`: keywords cost a third more here
    return ReplayRecord(where[0], where[1], offset, message.timestamp()[1], message.key(),
                        message.value(), headers)  # type: ignore[arg-type]


def _done(consumer: Any, remaining: dict[tuple[str, int], PartitionPlan],
          where: tuple[str, int]) -> None:
    from confluent_kafka import TopicPartition

    if remaining.pop(where, None) is not None:
        consumer.pause([TopicPartition(*where)])
