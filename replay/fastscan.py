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

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from base.errors import ServiceUnavailable
from base.kafka import kafka_connection
from replay.exceptions import ReplayError
from replay.kafka import STACK_HINT, bootstrap_servers
from replay.record import Decoder, ReplayRecord
from replay.selection import (
    PartitionPlan,
    ScanStats,
    Selection,
    count_left_out_replay,
    matches,
    matches_raw,
)

BATCH = 5000


def open_reader(bootstrap: str | None) -> Any:
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
    prefilter = _prefilter(selection, decoder)
    consumer = open_reader(bootstrap)
    try:
        consumer.assign([TopicPartition(t, p, item.start) for (t, p), item in remaining.items()])
        empty = 0
        while remaining and empty < idle_polls:
            messages = consumer.consume(BATCH, timeout=1.0)
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
                counters.positions[where] = offset
                record = _record(message, where, offset)
                if offset + 1 >= item.stop:
                    _done(consumer, remaining, where)
                if not matches_raw(record, selection):
                    count_left_out_replay(record, selection, counters)
                    continue
                if prefilter is not None and not prefilter(record):
                    continue
                if not matches(record.decode(decoder), selection):
                    continue
                counters.matched += 1
                counters.undecodable += record.decode_error is not None
                yield record
                if selection.limit is not None and counters.matched >= selection.limit:
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
        consumer.close()


_EXTRAS = ("topic", "partition", "offset", "timestamp")  # what `envelope()` adds


def _prefilter(selection: Selection, decoder: Decoder) -> Callable[[ReplayRecord], bool] | None:
    """`--filter` tested on the value's fields it names only, before the full decode.

    A record the filter rejects this way is rejected by the full test too (same
    fields, same values), so only the decoding of rejected records is saved: the
    value's other fields are skipped, not built (about half the decode of a CDC
    envelope). With `key` in the filter, or a decoder without `decode_fields`, there
    is no pre-filter. A record whose pre-filter decode fails goes to the full test,
    which reports it undecodable. One difference, by design: a value whose named
    fields decode but whose skipped text is not UTF-8 is left out by the filter
    instead of listed as undecodable (skipping does not read the text).
    """
    compiled = selection.compiled_filter
    decode_fields = getattr(decoder, "decode_fields", None)
    if compiled is None or decode_fields is None or "key" in compiled.names:
        return None
    fields = frozenset(compiled.names)

    def wanted(record: ReplayRecord) -> bool:
        if record.value_bytes is None:
            return True  # a tombstone: the full test decides
        try:
            value = decode_fields(record.topic, record.value_bytes, fields)
        except Exception:  # the full decode reports it
            return True
        if not isinstance(value, Mapping):
            return True
        envelope = dict(value)
        for name in _EXTRAS:
            envelope.setdefault(name, getattr(record, name))
        return compiled.matches(envelope)

    return wanted


def _record(message: Any, where: tuple[str, int], offset: int) -> ReplayRecord:
    return ReplayRecord(
        topic=where[0],
        partition=where[1],
        offset=offset,
        timestamp=message.timestamp()[1],
        key_bytes=message.key(),
        value_bytes=message.value(),
        headers=[(name, value if value is not None else b"")
                 for name, value in (message.headers() or ())],
    )


def _done(consumer: Any, remaining: dict[tuple[str, int], PartitionPlan],
          where: tuple[str, int]) -> None:
    from confluent_kafka import TopicPartition

    if remaining.pop(where, None) is not None:
        consumer.pause([TopicPartition(*where)])
