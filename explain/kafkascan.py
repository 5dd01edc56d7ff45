"""Bounded reads of Kafka for `labstream explain`: find a few records, never join a group.

A scan starts at the offset of `since_ms` (the experiment's creation, minus a
margin) or at most `max_records` before the end of each partition, and stops at
the end offset it saw when it started, or when its time budget is spent (then
the result says it was cut short). `check_crcs=False`: the broker checked them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from base.contracts.headers import header_bytes
from base.errors import ServiceUnavailable
from base.kafka import kafka_connection

STACK_HINT = "start the stack (`labstream stack up`) or set LABSTREAM_KAFKA_BOOTSTRAP_SERVERS"


@dataclass(frozen=True)
class ScanResult:
    records: list[Any]  # kafka-python ConsumerRecords that matched
    scanned: int
    complete: bool  # False: the budget ran out before the end offsets


class KafkaScanner:
    def __init__(self, bootstrap_servers: str, *, max_records: int = 200_000,
                 budget_s: float = 20.0) -> None:
        # it narrates every connection, and a broker that is down is our answer to give
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        self.bootstrap_servers = bootstrap_servers
        self.max_records = max_records
        self.budget_s = budget_s
        try:
            self._consumer = KafkaConsumer(
                **kafka_connection(bootstrap_servers).kafka_python("explain"), group_id=None,
                enable_auto_commit=False, check_crcs=False,
                auto_offset_reset="earliest", request_timeout_ms=15_000,
                bootstrap_timeout_ms=10_000,
            )
            self._topics: set[str] = set(self._consumer.topics())
        except KafkaError as exc:
            raise ServiceUnavailable(f"Kafka at {bootstrap_servers} did not answer: {exc}",
                                     hint=STACK_HINT) from exc

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> KafkaScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_topic(self, topic: str) -> bool:
        return topic in self._topics

    def scan(self, topic: str, match: Callable[[Any], bool], *,
             since_ms: int | None = None) -> ScanResult:
        """Records of `topic` (all partitions) for which `match(record)` is true."""
        from kafka import TopicPartition

        if topic not in self._topics:
            return ScanResult([], 0, True)
        consumer = self._consumer
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        end = consumer.end_offsets(partitions)
        start = self._start_offsets(partitions, end, since_ms)
        pending = {tp for tp in partitions if start[tp] < end[tp]}
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp])
        matched: list[Any] = []
        scanned = 0
        deadline = time.monotonic() + self.budget_s
        while pending and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if tp not in pending or record.offset >= end[tp]:
                        continue
                    scanned += 1
                    if match(record):
                        matched.append(record)
                if tp in pending and consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
        consumer.assign([])
        return ScanResult(matched, scanned, not pending)

    def _start_offsets(self, partitions: list[Any], end: dict[Any, int],
                       since_ms: int | None) -> dict[Any, int]:
        beginning = self._consumer.beginning_offsets(partitions)
        start = {tp: max(beginning[tp], end[tp] - self.max_records) for tp in partitions}
        if since_ms is not None:
            found = self._consumer.offsets_for_times({tp: since_ms for tp in partitions})
            for tp in partitions:
                at = found.get(tp)
                start[tp] = max(start[tp], at.offset if at is not None else end[tp])
        return start


def committed_offsets(bootstrap_servers: str, group: str,
                      topics: Iterable[str]) -> dict[str, int] | None:
    """"topic/partition" -> committed offset of `group` on `topics`; None if it has none."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_connection(bootstrap_servers).kafka_python("explain"),
                             request_timeout_ms=15_000)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    wanted = set(topics)
    result = {f"{tp.topic}/{tp.partition}": meta.offset for tp, meta in offsets.items()
              if tp.topic in wanted and meta.offset is not None and meta.offset >= 0}
    return result or None


def header(record: Any, name: str) -> bytes | None:
    return header_bytes(record.headers, name)
