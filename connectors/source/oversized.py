"""What happens to a change record larger than its topic takes.

Kafka refuses such a record whatever the retry, and before this policy the
connector retried it forever, stalling every table behind it. Two modes
(LABSTREAM_CDC_OVERSIZED_RECORD_MODE):

- `reference` (default): the record's largest text/bytes/json column values are
  written to `labstream.cdc_oversized_values` (durably, before the record is sent)
  and replaced in the record by `labstream-oversized:<id>` (for json columns:
  `{"labstream-oversized": <id>}`, still valid JSON), largest first, until the
  record fits. Nothing stalls and nothing is lost: the value is one query away.
- `fail`: stop with the table, key, LSN and the fix.

Only oversized records pay for this: the emitter compares the record's length
with its topic's limit and calls in here when it is over.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from base.logs import kv
from connectors.envelope import ChangeEvent
from connectors.source.exceptions import OversizedRecord

log = logging.getLogger(__name__)

REFERENCE_PREFIX = "labstream-oversized:"
# room for the record's framing, headers and the batch header inside max.message.bytes
RECORD_OVERHEAD_BYTES = 4096

_UPSERT = """
INSERT INTO labstream.cdc_oversized_values
    (topic, table_name, record_key, lsn, op, image, column_name, value_text, value_bytes)
VALUES (%s, %s, %s, %s::pg_lsn, %s, %s, %s, %s, %s)
ON CONFLICT (topic, lsn, md5(record_key), op, image, column_name)
DO UPDATE SET value_text = EXCLUDED.value_text, value_bytes = EXCLUDED.value_bytes
RETURNING id
"""

Serialize = Callable[[ChangeEvent], bytes | None]


def _lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes)):
        return len(value)
    return 0  # numbers, dates, arrays, structs are never the large part we replace


class OversizedPolicy:
    def __init__(self, mode: str, conn: Any, serialize: Serialize) -> None:
        self.mode = mode
        self.conn = conn
        self.serialize = serialize
        self.replaced = 0

    def fit(self, event: ChangeEvent, key: bytes | None, value: bytes, limit: int) -> tuple[
            ChangeEvent, bytes]:
        """The event (and its bytes) made to fit `limit`, or OversizedRecord."""
        if self.mode == "fail" or event.table is None or event.value is None:
            raise self._error(event, len(value), limit, "mode is 'fail'" if self.mode == "fail"
                              else "this kind of record has no column to move out")
        envelope = dict(event.value)
        images = {name: dict(envelope[name]) for name in ("after", "before")
                  if envelope.get(name)}
        candidates = sorted(
            ((_size(v), image, field) for image, row in images.items()
             for field, v in row.items()),
            reverse=True)
        kinds = {c.field: (c.codec.connect.get("type"), c.codec.connect.get("name"), c.name)
                 for c in event.table.columns}
        moved: list[str] = []
        encoded = value
        for size, image, field in candidates:
            if len(encoded) + len(key or b"") + RECORD_OVERHEAD_BYTES <= limit:
                break
            if size < 64:
                break
            connect_type, name, column = kinds.get(field, (None, None, field))
            if connect_type not in ("string", "bytes"):
                continue
            ref = self._keep(event, image, column, images[image][field])
            images[image][field] = _reference(ref, connect_type, name)
            moved.append(f"{image}.{column}")
            envelope.update(images)
            candidate = ChangeEvent(event.topic, event.key, envelope, event.table, event.schemas,
                                    event.headers)
            encoded = self.serialize(candidate) or b""
            event = candidate
        if len(encoded) + len(key or b"") + RECORD_OVERHEAD_BYTES > limit:
            raise self._error(event, len(value), limit,
                              "its text/bytes/json columns moved out, it is still too large")
        self.replaced += 1
        kv(log, "warning", "oversized change record: large column values kept in "
           "labstream.cdc_oversized_values, the record carries references",
           topic=event.topic, key=_key_text(event), columns=",".join(moved),
           record_bytes=len(value), limit=limit)
        return event, encoded

    def _keep(self, event: ChangeEvent, image: str, column: str, value: Any) -> int:
        assert event.table is not None and event.value is not None
        source = event.value["source"]
        table = f"{event.table.schema_name}.{event.table.table_name}"
        text, data = (None, bytes(value)) if isinstance(value, (bytes, bytearray)) else (
            value, None)
        with self.conn.transaction():
            # the value must be durable before the record that points at it is acked
            self.conn.execute("SET LOCAL synchronous_commit = on")
            row = self.conn.execute(_UPSERT, (
                event.topic, table, _key_text(event), _lsn_text(source.get("lsn") or 0),
                event.value["op"], image, column, text, data)).fetchone()
        return int(row[0])

    def _error(self, event: ChangeEvent, size: int, limit: int, why: str) -> OversizedRecord:
        source = (event.value or {}).get("source") or {}
        table = f"{source.get('schema')}.{source.get('table')}" if source else event.topic
        lsn = source.get("lsn")
        return OversizedRecord(
            f"change record of {table} key {_key_text(event)} at LSN "
            f"{_lsn_text(lsn) if lsn else '?'} is {size} bytes, topic {event.topic} takes "
            f"{limit} ({why})",
            hint="raise LABSTREAM_CDC_MAX_RECORD_BYTES (and the topic's max.message.bytes), "
            "or set LABSTREAM_CDC_OVERSIZED_RECORD_MODE=reference",
        )


def _reference(ref: int, connect_type: str | None, name: str | None) -> Any:
    text = f"{REFERENCE_PREFIX}{ref}"
    if connect_type == "bytes":
        return text.encode()
    if name == "io.debezium.data.Json":
        return json.dumps({REFERENCE_PREFIX.rstrip(":"): ref})
    return text


def _key_text(event: ChangeEvent) -> str:
    return json.dumps(event.key, default=str, separators=(",", ":"), sort_keys=True)


def fetch_value(conn: Any, reference: str | bytes) -> str | bytes | None:
    """The kept value a `labstream-oversized:<id>` reference (or json form) points at."""
    text = reference.decode() if isinstance(reference, bytes) else reference
    if text.startswith("{"):
        ref = int(json.loads(text)[REFERENCE_PREFIX.rstrip(":")])
    else:
        ref = int(text.removeprefix(REFERENCE_PREFIX))
    row = conn.execute("SELECT value_text, value_bytes FROM labstream.cdc_oversized_values "
                       "WHERE id = %s", (ref,)).fetchone()
    if row is None:
        return None
    return row[0] if row[0] is not None else bytes(row[1])
