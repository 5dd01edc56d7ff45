"""Decoding cost for subscribers: labstream_client vs confluent-kafka's stock deserializer.

The same N Confluent-framed Avro change events (a lab `samples`-like table: text,
numeric(10,2), timestamptz, jsonb) are decoded, in interleaved rounds, by

- `stock`: confluent-kafka `AvroDeserializer` + `SchemaRegistryClient` (dicts);
- `client-raw`: `labstream_client.Decoder.raw` (dicts);
- `client-typed`: `labstream_client.Decoder.value` (`ChangeEvent` dataclasses).

Both fetch the writer schema once from `labstream registry serve` (a subprocess on a
free port) and cache it, so the loop measures decoding only. Needs the local stack
(the lab-database registry). Prints per-round records/s and the medians.

    .venv/bin/python bench/client_decode.py --records 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from labstream_client import Decoder

from connectors.envelope import SourceInfo, build_change_event
from connectors.pgoutput import Relation, RelationColumn
from connectors.registry import DbSchemaRegistry
from connectors.schema import TableSchema
from connectors.serde import AvroSerializer

REPO = Path(__file__).resolve().parent.parent


def records(count: int, prefix: str) -> tuple[str, list[bytes]]:
    columns = (RelationColumn(True, "id", 25, -1), RelationColumn(False, "name", 25, -1),
               RelationColumn(False, "volume_ul", 1700, ((10 << 16) | 2) + 4),
               RelationColumn(False, "created_at", 1184, -1),
               RelationColumn(False, "meta", 3802, -1))
    table = TableSchema.from_relation(Relation(1, "public", "samples", "f", columns),
                                      topic_prefix=prefix, not_null_columns={"id", "name"},
                                      primary_key=["id"])
    source = SourceInfo(name=prefix, db="lab", schema="public", table="samples",
                        ts_us=1_700_000_000_000_000, lsn=1, tx_id=1, last_commit_lsn=1)
    serializer = AvroSerializer(DbSchemaRegistry())
    out = []
    for i in range(count):
        row = table.row_to_values((f"s-{i}", f"plasma {i}", f"{i % 1000}.25",
                                   "2026-12-03 12:00:00.123456+00", '{"lot": "L1"}'))
        event = build_change_event(table, "c", None, row, source, None, ts_us=1_000 + i)
        value = serializer.value_bytes(event)
        assert value is not None
        out.append(value)
    return table.topic, out


def rate(decode: Callable[[bytes], Any], data: list[bytes]) -> float:
    decode(data[0])  # the schema fetch happens here, outside the timing
    start = time.perf_counter()
    for item in data:
        decode(item)
    return len(data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    topic, data = records(args.records, f"bench{uuid.uuid4().hex[:8]}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "labstream.cli", "registry", "serve",
                               "--port", str(port), "--read-only"], cwd=REPO,
                              env=dict(os.environ), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        stock = AvroDeserializer(SchemaRegistryClient({"url": url}))
        ctx = SerializationContext(topic, MessageField.VALUE)
        client = Decoder(url)
        systems: dict[str, Callable[[bytes], Any]] = {
            "stock": lambda b: stock(b, ctx), "client-raw": client.raw,
            "client-typed": client.value,
        }
        assert client.raw(data[-1]) == stock(data[-1], ctx)  # same values
        results: dict[str, list[float]] = {name: [] for name in systems}
        for round_no in range(args.rounds):
            for name, decode in systems.items():  # interleaved
                results[name].append(rate(decode, data))
            print(f"round {round_no + 1}: " + ", ".join(
                f"{n} {r[-1]:,.0f}/s" for n, r in results.items()), flush=True)
    finally:
        server.terminate()
        server.wait(30)
    medians = {name: median(values) for name, values in results.items()}
    print(json.dumps({"records": args.records, "rounds": args.rounds,
                      "median_records_per_s": {k: round(v) for k, v in medians.items()},
                      "ratio_to_stock": {k: round(v / medians["stock"], 2)
                                         for k, v in medians.items()},
                      "loadavg": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
