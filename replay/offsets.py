"""The metadata and offset questions of `selection.plan`, answered by librdkafka.

kafka-python took ≈ 100 ms for each metadata question here (`topics()`, the partitions
of a topic it had not seen), whatever the cluster held: a fixed ≈ 100 ms before every
scan's first record and again for the dry run's look at the decisions topic
(docs/BENCHMARKS.md, "Issue 15 item 5, session 3"). librdkafka answers them in well
under a millisecond once connected. `LibrdkafkaOffsets` has the kafka-python methods
`plan` calls, with the same results:

- `topics()`: the topic names, Kafka's internal ones (`__consumer_offsets`,
  `__transaction_state`, `__share_group_state`) left out as kafka-python leaves them out;
- `partitions_for_topic(topic)`: the partition numbers, None for an unknown topic;
- `beginning_offsets` / `end_offsets`: a partition's low and high watermarks, read
  uncommitted (kafka-python's default isolation), both from one request per partition;
- `offsets_for_times`: the earliest offset at or after a time, None where there is none.

Anything else (reading the record at a bound, for an empty window's message) goes to
the kafka-python consumer it wraps, with kafka-python's own `TopicPartition`s.
"""

from __future__ import annotations

from typing import Any

from base.errors import ServiceUnavailable
from replay.kafka import STACK_HINT

TIMEOUT_S = 10.0
# Kafka's own topics, which kafka-python leaves out by the metadata's "internal" flag
# (confluent-kafka does not expose the flag; a user topic may start with "__" too)
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})


class LibrdkafkaOffsets:
    """kafka-python's metadata and offset calls of `plan`, on a librdkafka consumer."""

    def __init__(self, fallback: Any, bootstrap: str | None) -> None:
        from replay.fastscan import open_reader

        self._fallback = fallback
        self._reader = open_reader(bootstrap, {"isolation.level": "read_uncommitted"})
        self._partitions: dict[str, set[int]] = {}
        self._high: dict[Any, int] = {}  # from the last beginning_offsets, for end_offsets

    def __getattr__(self, name: str) -> Any:  # what plan reads with kafka-python
        return getattr(self._fallback, name)

    def close(self) -> None:
        self._reader.close()

    def topics(self) -> set[str]:
        metadata = _answer(lambda: self._reader.list_topics(timeout=TIMEOUT_S))
        self._partitions = {
            name: set(topic.partitions) for name, topic in metadata.topics.items()
            if topic.error is None and name not in INTERNAL_TOPICS
        }
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        if topic not in self._partitions:
            self.topics()
        return self._partitions.get(topic)

    def beginning_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        low: dict[Any, int] = {}
        for tp in partitions:
            low[tp], self._high[tp] = self._watermarks(tp)
        return low

    def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        # the high watermarks read with the low ones a moment ago: one request each
        return {tp: self._high.pop(tp) if tp in self._high else self._watermarks(tp)[1]
                for tp in partitions}

    def offsets_for_times(self, timestamps: dict[Any, int]) -> dict[Any, Any]:
        from confluent_kafka import TopicPartition

        asked = [TopicPartition(tp.topic, tp.partition, millis)
                 for tp, millis in timestamps.items()]
        found = _answer(lambda: self._reader.offsets_for_times(asked, timeout=TIMEOUT_S))
        by_place = {(item.topic, item.partition): item for item in found}
        answer: dict[Any, Any] = {}
        for tp in timestamps:
            item = by_place.get((tp.topic, tp.partition))
            if item is not None and item.error is not None:
                raise ServiceUnavailable(f"offsets for times of {tp.topic}/{tp.partition}: "
                                         f"{item.error}", hint=STACK_HINT)
            # librdkafka says -1 (the end) where no record is at or after the time
            answer[tp] = _Found(item.offset) if item is not None and item.offset >= 0 else None
        return answer

    def _watermarks(self, tp: Any) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        place = TopicPartition(tp.topic, tp.partition)
        low, high = _answer(lambda: self._reader.get_watermark_offsets(
            place, timeout=TIMEOUT_S, cached=False))
        return int(low), int(high)


class _Found:
    """kafka-python's `OffsetAndTimestamp`, as far as `plan` reads it."""

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset


def _answer(ask: Any) -> Any:
    from confluent_kafka import KafkaException

    try:
        answer = ask()
    except KafkaException as exc:
        raise ServiceUnavailable(f"Kafka did not answer: {exc}", hint=STACK_HINT) from exc
    if answer is None:
        raise ServiceUnavailable("Kafka did not answer in time", hint=STACK_HINT)
    return answer
