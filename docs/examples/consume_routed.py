"""Read typed lab events from a routed topic and print them, one line each.

    .venv/bin/python docs/examples/consume_routed.py          # lab.routed.hplc.completed
    .venv/bin/python docs/examples/consume_routed.py --topic lab.routed.run.failed --max 5

Records are Confluent-framed Avro; the writer schema is fetched by id from the
same registry the worker registered it in (SCHEMA_REGISTRY_URL, else the lab
database). The trace context of each event is in its `traceparent` header.
Uses only confluent-kafka and labstream's registry client.
"""

from __future__ import annotations

import argparse
import json
import uuid

from confluent_kafka import Consumer

from base.settings import service_settings
from connectors.registry import registry_from_settings
from connectors.serde import AvroDeserializer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default="lab.routed.hplc.completed")
    parser.add_argument("--group", default=None, help="consumer group (default: a new one)")
    parser.add_argument("--max", type=int, default=0, help="stop after N events (0: never)")
    parser.add_argument("--timeout", type=float, default=0,
                        help="stop after N seconds without a record (0: never)")
    args = parser.parse_args()

    consumer = Consumer({
        "bootstrap.servers": service_settings().kafka_bootstrap_servers,
        "group.id": args.group or f"example-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
    })
    decode = AvroDeserializer(registry_from_settings()).decode
    consumer.subscribe([args.topic])
    seen, idle = 0, 0.0
    try:
        while not args.max or seen < args.max:
            message = consumer.poll(1.0)
            if message is None or message.error():
                idle += 1.0
                if args.timeout and idle >= args.timeout:
                    break
                continue
            idle = 0.0
            event = decode(message.value())
            if event is None:
                continue
            seen += 1
            headers = dict(message.headers() or [])
            print(json.dumps({
                "kind": event["kind"],
                "event_id": event["event_id"],
                "tenant_id": event["tenant_id"],
                "payload": event["payload"],
                "complete": event["enrichment"]["complete"],
                "missing": event["enrichment"]["missing"],
                "from": f"{event['origin']['topic']}[{event['origin']['partition']}]"
                        f"@{event['origin']['offset']}",
                "traceparent": _text(headers.get("traceparent")),
            }, default=str), flush=True)
    finally:
        consumer.close()
    return 0


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


if __name__ == "__main__":
    raise SystemExit(main())
