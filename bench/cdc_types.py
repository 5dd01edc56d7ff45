"""CPU per change record by column type: the connector's hot path, offline.

For each type, a table `(id bigint primary key, v <type>)` gets 20,000 inserts as pgoutput
bytes in memory, fed through what the streaming source does per message (decode,
assemble, build the Debezium event, serialise, hand to a producer that only keeps the
delivery callbacks). The marginal cost of the type is its table's µs/record minus the
id-only table's. `--code DIR` runs the same in a subprocess on another checkout (e.g. the
previous main), interleaved type by type, so both see the same machine load.

    .venv/bin/python bench/cdc_types.py --serializer json
    .venv/bin/python bench/cdc_types.py --serializer avro --code /tmp/main-src
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

JSONB_VALUE = '{"seq": {n}, "sku": "SKU-{m}", "qty": {q}, "note": "{h}"}'
# name -> (type oid, text of row n as the walsender sends it)
TYPES: dict[str, tuple[int, Callable[[int], str]]] = {
    "id only": (0, lambda n: ""),
    "int4": (23, lambda n: str(n * 7)),
    "float8": (701, lambda n: repr(n * 0.5)),
    "bool": (16, lambda n: "t" if n & 1 else "f"),
    "text": (25, lambda n: f"bulk row {n}"),
    "timestamptz": (1184, lambda n: f"2026-11-25 20:{n % 60:02d}:00.{n % 999999:06d}+00"),
    "date": (1082, lambda n: f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}"),
    "numeric": (1700, lambda n: f"{n}.{n % 100:02d}"),
    "uuid": (2950, lambda n: f"a0eebc99-9c0b-4ef8-bb6d-{n:012d}"),
    "jsonb": (3802, lambda n: JSONB_VALUE.replace("{n}", str(n)).replace("{m}", str(n % 997))
              .replace("{q}", str(1 + n % 7)).replace("{h}", f"{n:032x}")),
    "text[]": (1009, lambda n: f'{{a{n},"b c",NULL}}'),
    "bytea": (17, lambda n: "\\x" + f"{n:016x}" * 4),
}
OID = 16384
PG_EPOCH_OFFSET_US = 946_684_800_000_000


def _cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


def _messages(type_name: str, rows: int) -> list[tuple[int, bytes]]:
    oid, text_of = TYPES[type_name]
    columns = [("id", 20)] + ([("v", oid)] if oid else [])
    relation = (b"R" + struct.pack(">I", OID) + _cstring("public") + _cstring("t") + b"d"
                + struct.pack(">H", len(columns)) + b"".join(
                    struct.pack(">B", 1 if name == "id" else 0) + _cstring(name)
                    + struct.pack(">Ii", type_oid, -1) for name, type_oid in columns))
    out: list[tuple[int, bytes]] = []
    lsn, per_tx, commit = 0x1_0000_0000, 1000, 1_795_000_000_000_000 - PG_EPOCH_OFFSET_US
    for tx in range(rows // per_tx):
        end = lsn + per_tx * 200
        out.append((lsn, b"B" + struct.pack(">QqI", end, commit + tx, 1000 + tx)))
        if tx == 0:
            out.append((lsn, relation))
        for row in range(tx * per_tx + 1, (tx + 1) * per_tx + 1):
            lsn += 200
            values = [str(row)] + ([text_of(row)] if oid else [])
            data = b"".join(b"t" + struct.pack(">I", len(v.encode())) + v.encode()
                            for v in values)
            out.append((lsn, b"I" + struct.pack(">I", OID) + b"N"
                        + struct.pack(">H", len(values)) + data))
        out.append((end, b"C" + struct.pack(">BQQq", 0, end, end + 48, commit + tx)))
        lsn = end + 48
    return out


class _Registry:
    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}

    def register(self, subject: str, schema_str: str) -> int:
        return self.ids.setdefault((subject, schema_str), len(self.ids) + 1)

    def get_schema(self, schema_id: int) -> str:
        raise KeyError(schema_id)

    def latest(self, subject: str) -> None:
        return None


class _Producer:
    def __init__(self) -> None:
        self.records = 0
        self.pending: list[Any] = []

    def produce(self, topic: str, key: Any, value: Any, headers: Any, on_delivery: Any) -> None:
        self.records += 1
        self.pending.append(on_delivery)

    def poll(self, timeout: float = 0.0) -> int:
        pending, self.pending = self.pending, []
        for callback in pending:
            callback(None, None)
        return len(pending)


def cpu_us_per_record(type_name: str, serializer_name: str, rows: int, repeat: int) -> float:
    """Best-of-`repeat` CPU µs per record through the hot path (this process's code)."""
    from connectors.pgoutput import decode_message
    from connectors.serde import AvroSerializer, JsonConverterSerializer
    from connectors.source.catalog import TableDetails
    from connectors.source.config import CdcSettings
    from connectors.source.emitter import Emitter
    from connectors.source.events import EventBuilder
    from connectors.source.producer import DeliveryTracker
    from connectors.source.transactions import TransactionAssembler

    messages = _messages(type_name, rows)
    details = TableDetails(("id",), frozenset({"id"}))
    best = float("inf")
    for _ in range(repeat):
        serializer = JsonConverterSerializer() if serializer_name == "json" \
            else AvroSerializer(_Registry())  # type: ignore[arg-type]
        settings = CdcSettings(name="types", slot_name="types", publication="types",
                               topic_prefix="types")
        producer, tracker = _Producer(), DeliveryTracker()
        builder = EventBuilder(settings, "lab", lambda _oid: details)
        emitter = Emitter(producer, serializer, lambda _topic: None)  # type: ignore[arg-type]

        def on_batch(batch: Any, builder: Any = builder, emitter: Any = emitter,
                     tracker: Any = tracker) -> None:
            ticket = tracker.open(batch.end_lsn if batch.final else 0, batch.commit_time_us)
            for out in builder.batch_events(batch):
                emitter.emit(out, ticket)
            ticket.sealed = True

        assembler = TransactionAssembler(on_batch, builder.on_relation, lambda _m: None)
        started = time.process_time()
        for count, (lsn, payload) in enumerate(messages, 1):
            assembler.feed(decode_message(payload), lsn)
            if not count & 255:
                producer.poll(0)
                tracker.advance()
        producer.poll(0)
        best = min(best, (time.process_time() - started) / producer.records * 1e6)
    return best


def _other(code: Path, type_name: str, serializer: str, rows: int, repeat: int) -> float:
    script = ("import sys, json\n"
              "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
              f"sys.path.insert(0, {str(code)!r})\n"
              f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from cdc_types import cpu_us_per_record\n"
              f"print(json.dumps(cpu_us_per_record({type_name!r}, {serializer!r}, {rows}, "
              f"{repeat})))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=code)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serializer", default="json", choices=["json", "avro"])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="medians over this many rounds")
    parser.add_argument("--code", type=Path, help="another checkout, measured interleaved")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent)
    results: dict[str, dict[str, list[float]]] = {t: {"this": [], "other": []} for t in TYPES}
    for _ in range(args.rounds):
        for type_name in TYPES:
            if args.code is not None:
                results[type_name]["other"].append(
                    _other(args.code, type_name, args.serializer, args.rows, args.repeat))
                results[type_name]["this"].append(
                    _other(Path(here), type_name, args.serializer, args.rows, args.repeat))
            else:
                results[type_name]["this"].append(
                    cpu_us_per_record(type_name, args.serializer, args.rows, args.repeat))
    base = {k: statistics.median(v) for k, v in results["id only"].items() if v}
    print(f"| type ({args.serializer}) | this µs/record | this marginal |"
          + (" other µs/record | other marginal | this/other |" if args.code else ""))
    print("|---|---|---|" + ("---|---|---|" if args.code else ""))
    for type_name, runs in results.items():
        this = statistics.median(runs["this"])
        line = f"| {type_name} | {this:.1f} | {this - base['this']:+.1f} |"
        if args.code:
            other = statistics.median(runs["other"])
            line += f" {other:.1f} | {other - base['other']:+.1f} | {this / other:.2f} |"
        print(line)


if __name__ == "__main__":
    main()
