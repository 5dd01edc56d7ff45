"""CPU per change record of the connector's hot path, without PostgreSQL or Kafka.

    .venv/bin/python bench/cdc_hotpath.py [--serializer avro|json] [--rows 20000] [--repeat 5]
    .venv/bin/python bench/cdc_hotpath.py --serializer json --profile   # cProfile, top 25
    .venv/bin/python bench/cdc_hotpath.py --rows-per-tx 1               # steady-load shape

The pgoutput bytes of the bulk benchmark's table (1,000-row transactions) are built
in memory, then fed through what `CdcConnector._stream` does per message: decode,
assemble transactions, build Debezium events, serialise and hand to a producer (here
one that only keeps the delivery callbacks). Prints CPU microseconds per record (best
of `--repeat`), so codec changes can be compared on a noisy machine without the
broker and the database competing for the cores.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import struct
import time
from collections.abc import Callable
from typing import Any

from connectors.pgoutput import PG_EPOCH_OFFSET_US, decode_message
from connectors.serde import AvroSerializer, EventSerializer, JsonConverterSerializer
from connectors.source.catalog import TableDetails
from connectors.source.config import CdcSettings
from connectors.source.emitter import Emitter
from connectors.source.events import EventBuilder
from connectors.source.producer import DeliveryTracker
from connectors.source.transactions import TransactionAssembler

OID = 16384
# (name, type oid) of the bench table: bigserial id, text, float8, text, int4, timestamptz
COLUMNS = [("id", 20), ("tenant", 25), ("reading", 701), ("note", 25), ("qty", 23),
           ("created_at", 1184)]
DETAILS = TableDetails(primary_key=("id",),
                       not_null=frozenset({"id", "tenant", "qty", "created_at"}))


def _cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


def relation_message() -> bytes:
    columns = b"".join(
        struct.pack(">B", 1 if name == "id" else 0) + _cstring(name) + struct.pack(">Ii", oid, -1)
        for name, oid in COLUMNS)
    return (b"R" + struct.pack(">I", OID) + _cstring("public") + _cstring("bench_hotpath")
            + b"d" + struct.pack(">H", len(COLUMNS)) + columns)


def insert_message(row: int) -> bytes:
    values = [str(row), f"tenant-{row % 7}", repr(row * 0.5), f"bulk row {row}", str(row),
              "2026-11-25 20:00:00.123456+00"]
    data = b"".join(b"t" + struct.pack(">I", len(v.encode())) + v.encode() for v in values)
    return b"I" + struct.pack(">I", OID) + b"N" + struct.pack(">H", len(values)) + data


def stream(rows: int, per_tx: int = 1_000) -> list[tuple[int, bytes]]:
    """(lsn, pgoutput payload) as the walsender sends them: R, then B, I..., C per tx."""
    commit_pg_us = 1_795_000_000_000_000 - PG_EPOCH_OFFSET_US
    out: list[tuple[int, bytes]] = []
    lsn = 0x1_0000_0000
    for tx in range(rows // per_tx):
        end = lsn + per_tx * 200
        out.append((lsn, b"B" + struct.pack(">QqI", end, commit_pg_us + tx, 1000 + tx)))
        if tx == 0:
            out.append((lsn, relation_message()))
        for row in range(tx * per_tx, (tx + 1) * per_tx):
            lsn += 200
            out.append((lsn, insert_message(row + 1)))
        out.append((end, b"C" + struct.pack(">BQQq", 0, end, end + 48, commit_pg_us + tx)))
        lsn = end + 48
    return out


class MemoryRegistry:
    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}

    def register(self, subject: str, schema_str: str) -> int:
        return self.ids.setdefault((subject, schema_str), len(self.ids) + 1)

    def get_schema(self, schema_id: int) -> str:
        raise KeyError(schema_id)

    def latest(self, subject: str) -> None:
        return None


class CallbackProducer:
    """Keeps delivery callbacks and fires them on poll, as librdkafka would after acks."""

    def __init__(self) -> None:
        self.records = 0
        self.pending: list[Callable[[Any, Any], None]] = []

    def produce(self, topic: str, key: Any, value: Any, headers: Any,
                on_delivery: Callable[[Any, Any], None]) -> None:
        self.records += 1
        self.pending.append(on_delivery)

    def poll(self, timeout: float = 0.0) -> int:
        pending, self.pending = self.pending, []
        for callback in pending:
            callback(None, None)
        return len(pending)


def run(messages: list[tuple[int, bytes]], serializer: EventSerializer) -> int:
    settings = CdcSettings(name="hotpath", slot_name="hotpath", publication="hotpath",
                           topic_prefix="hotpath")
    producer = CallbackProducer()
    tracker = DeliveryTracker()
    builder = EventBuilder(settings, "lab", lambda _oid: DETAILS)
    emitter = Emitter(producer, serializer, lambda _topic: None)  # type: ignore[arg-type]

    def on_batch(batch: Any) -> None:
        ticket = tracker.open(batch.end_lsn if batch.final else 0, batch.commit_time_us)
        for out in builder.batch_events(batch):
            emitter.emit(out, ticket)
        ticket.sealed = True

    def on_relation(relation: Any) -> None:
        builder.on_relation(relation)

    assembler = TransactionAssembler(on_batch, on_relation, lambda _m: None)
    for count, (lsn, payload) in enumerate(messages, 1):
        assembler.feed(decode_message(payload), lsn)
        if not count & 255:
            producer.poll(0)
            tracker.advance()
    producer.poll(0)
    tracker.advance()
    return producer.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serializer", default="avro", choices=["avro", "json"])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows-per-tx", type=int, default=1_000,
                        help="1 = the steady benchmark's single-row transactions")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    messages = stream(args.rows, args.rows_per_tx)

    def serializer() -> EventSerializer:
        if args.serializer == "json":
            return JsonConverterSerializer()
        return AvroSerializer(MemoryRegistry())

    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, messages, serializer())
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    timings = []
    for _ in range(args.repeat):
        started = time.process_time()
        records = run(messages, serializer())
        timings.append(time.process_time() - started)
    best = min(timings)
    print(f"{args.serializer}: {records} records, best {best:.3f} s CPU of {args.repeat} "
          f"= {1e6 * best / records:.1f} us/record ({records / best:,.0f} records/s on one core)")


if __name__ == "__main__":
    main()
