"""What tracing costs the connector per transaction, in instructions (valgrind callgrind).

    .venv/bin/python bench/tracing_instructions.py [--modes on,noexport,off] [--tree DIR]

On a shared machine CPU seconds of the same run vary by ±20 %, more than the effect;
an instruction count does not depend on the neighbours. Each mode runs the connector's
own `Emitter` (tracing/batch.py, the span processors, the span store's COPY into the
stack's PostgreSQL) for N1 and N2 traced transactions of `--rows-per-tx` records each,
under callgrind, and prints (Ir(N2) - Ir(N1)) / (N2 - N1): the instructions of one
transaction, start-up excluded. The producer is a stand-in that acknowledges at once and
the events are trivial, so `off` is not the connector's per-transaction cost, only the
baseline the tracing cost is measured against. Modes: `on` (span store exporter),
`noexport` (spans made, no exporter), `off` (tracing disabled). The export runs in the
measuring thread (force_flush every 500 transactions, the SDK's worker thread never
wakes) and the import-time heap is frozen out of the GC, so the count does not depend
on thread switches or on when a full collection falls. `--tree` runs another checkout's
code (e.g. `git archive <commit> | tar -x -C /tmp/old`) for a before/after.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

N1, N2 = 500, 2500
TOPIC = "bench.tracing_instructions"  # the stand-in records' topic (and the spans' name)


def child(mode: str, transactions: int, rows: int) -> None:
    os.environ.update(OTEL_BSP_SCHEDULE_DELAY="100000000", OTEL_BSP_MAX_QUEUE_SIZE="100000",
                      OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100000")
    os.environ["LABSTREAM_TRACING_ENABLED"] = "false" if mode == "off" else "true"
    os.environ["LABSTREAM_TRACING_EXPORTERS"] = "none" if mode == "noexport" else "db"
    import gc

    from opentelemetry import trace

    from connectors.source.emitter import Emitter
    from connectors.source.events import OutEvent
    from connectors.source.producer import DeliveryTracker
    from tracing import setup
    from tracing.propagation import context_from_db_messages

    class Ack:
        __slots__ = ("_offset", "_topic")

        def __init__(self, topic: str, offset: int) -> None:
            self._topic, self._offset = topic, offset

        def topic(self) -> str:
            return self._topic

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return self._offset

    class Producer:  # acknowledges everything at the next poll
        def __init__(self) -> None:
            self.pending: list[tuple[object, Ack]] = []
            self.offset = 0

        def produce(self, topic, key, value, headers, on_delivery) -> None:
            self.offset += 1
            self.pending.append((on_delivery, Ack(topic, self.offset)))

        def poll(self) -> None:
            pending, self.pending = self.pending, []
            for callback, ack in pending:
                callback(None, ack)  # type: ignore[operator]

    class Serializer:
        def key_bytes(self, event: object) -> bytes:
            return b"k"

        def value_bytes(self, event: object) -> bytes:
            return b"v" * 100

    class Event:
        __slots__ = ("headers", "key", "table", "topic", "value")

        def __init__(self) -> None:
            self.topic, self.headers, self.value = TOPIC, (), {"op": "c"}
            self.table, self.key = None, b"k"

    setup.configure_tracing("labstream-cdc")
    producer = Producer()
    emitter = Emitter(producer, Serializer(), lambda topic: None,  # type: ignore[arg-type]
                      trace.get_tracer("labstream.cdc"))
    tracker, event = DeliveryTracker(), Event()

    def run(count: int) -> None:
        for number in range(count):
            context = context_from_db_messages({"traceparent": f"00-{random.getrandbits(128):032x}"
                                                f"-{random.getrandbits(64):016x}-01"})
            ticket = tracker.open(1)
            out = OutEvent(event, context)  # type: ignore[arg-type]
            for _ in range(rows):
                emitter.emit(out, ticket)
            ticket.sealed = True
            emitter.end_batch()
            producer.poll()
            tracker.advance()
            if number % 500 == 499:
                setup.flush_tracing()

    run(200)  # warm-up: caches, the span store connection
    gc.collect()
    gc.freeze()
    run(transactions)
    setup.flush_tracing()
    setup.shutdown_tracing()


def instructions(tree: Path, mode: str, transactions: int, rows: int) -> int:
    env = dict(os.environ, PYTHONPATH=str(tree))
    started_ns = time.time_ns()
    completed = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--child", mode, str(transactions), "--rows-per-tx", str(rows)],
        env=env, capture_output=True, text=True, check=True, cwd=tree)
    remove_spans(started_ns)
    found = re.search(r"Collected : (\d+)", completed.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {completed.stderr[-500:]}")
    return int(found.group(1))


def remove_spans(since_ns: int) -> None:
    """Delete the spans a child stored: the next child's ids are new anyway (a span id
    already stored would turn its COPY batch into INSERT ... ON CONFLICT, a different
    and dearer path), and the stack's span store stays clean."""
    import psycopg

    from base.settings import service_settings

    with psycopg.connect(service_settings().database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.spans WHERE service_name = 'labstream-cdc' "
                     "AND name = %s AND start_time_unix_nano >= %s",
                     (f"send {TOPIC}", since_ns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="on,noexport,off")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--rows-per-tx", type=int, default=10)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "TRANSACTIONS"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.rows_per_tx)
        return
    for mode in args.modes.split(","):
        low = instructions(args.tree, mode, N1, args.rows_per_tx)
        high = instructions(args.tree, mode, N2, args.rows_per_tx)
        print(f"{args.tree.name} {mode}: {(high - low) // (N2 - N1)} instructions per "
              f"{args.rows_per_tx}-record transaction", flush=True)


if __name__ == "__main__":
    main()
