"""`ReplayRecord`: one Kafka record as read back for a replay, raw bytes kept.

The raw key, value and headers are what a re-drive produces again, byte for
byte; the decoded key and value (Debezium envelope dicts) are for selection,
display and the dry run. A record that does not decode any more (schema gone
from the registry, corrupt bytes) keeps `decode_error` and is never hidden.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from base.contracts.headers import TRACEPARENT


class Decoder(Protocol):
    """Turns a record's key or value bytes into Python values (raises on failure)."""

    def decode(self, topic: str, data: bytes, *, is_key: bool) -> Any: ...


@dataclass(slots=True)  # no __dict__: cheaper to build and to hold (a dry run keeps all)
class ReplayRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int  # milliseconds since the epoch
    key_bytes: bytes | None
    value_bytes: bytes | None
    headers: list[tuple[str, bytes]]
    key: Any = None
    value: Any = None
    decode_error: str | None = None
    _decoded: bool = field(default=False, repr=False)

    @classmethod
    def from_consumer(cls, raw: Any) -> ReplayRecord:
        """From a kafka-python `ConsumerRecord` (no deserializers configured)."""
        return cls(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            timestamp=raw.timestamp,
            key_bytes=raw.key,
            value_bytes=raw.value,
            headers=[(name, value if value is not None else b"") for name, value in raw.headers],
        )

    def decode(self, decoder: Decoder) -> ReplayRecord:
        """Decode key and value once; failures land in `decode_error`, never raise."""
        if self._decoded:
            return self
        self._decoded = True
        # framed Avro straight to the reader, as `EnvelopeDecoder.decode` would pass it on
        # (two calls less per record of every scan)
        avro = getattr(decoder, "avro_decode", None)
        try:
            data = self.key_bytes
            if data is not None:
                self.key = avro(data) if avro is not None and data[:1] == b"\x00" \
                    else decoder.decode(self.topic, data, is_key=True)
            data = self.value_bytes
            if data is not None:  # None: a tombstone, which is fine
                self.value = avro(data) if avro is not None and data[:1] == b"\x00" \
                    else decoder.decode(self.topic, data, is_key=False)
        except Exception as exc:  # any decoder failure means "undecodable", reported per record
            self.decode_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return self

    @property
    def coordinates(self) -> str:
        """`topic/partition/offset`, the value of `labstream-replay-of`."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def header(self, name: str) -> bytes | None:
        for header_name, value in self.headers:
            if header_name.lower() == name.lower():
                return value
        return None

    @property
    def traceparent(self) -> str | None:
        raw = self.header(TRACEPARENT)
        try:
            return raw.decode("ascii").strip() if raw else None
        except UnicodeDecodeError:
            return None

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id of the `traceparent` header (lowercase hex), or None."""
        parts = (self.traceparent or "").split("-")
        if len(parts) >= 4 and len(parts[1]) == 32:
            return parts[1].lower()
        return None

    @property
    def op(self) -> str | None:
        return self.value.get("op") if isinstance(self.value, Mapping) else None

    @property
    def is_tombstone(self) -> bool:
        return self.value_bytes is None

    def key_text(self) -> str:
        """The primary key for display: `run-1`, `a,b` for composite keys, or raw text."""
        if isinstance(self.key, Mapping) and self.key:
            return ",".join("" if v is None else str(v) for v in self.key.values())
        if self.key is not None:
            return str(self.key)
        if self.key_bytes is None:
            return ""
        return self.key_bytes.decode("utf-8", errors="replace")

    def key_matches(self, wanted: str) -> bool:
        """`--key`: the decoded primary key value(s), `col=value`, or the raw key bytes."""
        if isinstance(self.key, Mapping):
            values = ["" if v is None else str(v) for v in self.key.values()]
            if wanted in values or wanted == ",".join(values):
                return True
            if any(wanted == f"{name}={value}" for name, value in self.key.items()):
                return True
        if self.key_bytes is not None:
            return self.key_bytes == wanted.encode("utf-8")
        return False

    def envelope(self) -> dict[str, Any]:
        """What `--filter` sees: the envelope's fields plus key and coordinates."""
        data: dict[str, Any] = dict(self.value) if isinstance(self.value, Mapping) else {}
        data.setdefault("key", self.key)
        data.setdefault("topic", self.topic)
        data.setdefault("partition", self.partition)
        data.setdefault("offset", self.offset)
        data.setdefault("timestamp", self.timestamp)
        return data

    def summary(self, width: int = 80) -> str:
        """A short description of the change for tables: `hplc completed status: running->...`."""
        if self.decode_error:
            return f"undecodable: {self.decode_error}"[:width]
        if self.is_tombstone:
            return "tombstone"
        value = self.value if isinstance(self.value, Mapping) else {}
        after, before = value.get("after"), value.get("before")
        row = after if isinstance(after, Mapping) else before if isinstance(before, Mapping) else {}
        changed = (
            [k for k in row if before.get(k) != row.get(k)]
            if isinstance(before, Mapping) and isinstance(after, Mapping)
            else []
        )
        interesting = [k for k in ("kind", "status", "event_kind", "name") if k in row]
        parts = [f"{k}={_short(row[k])}" for k in interesting]
        parts += [
            f"{k}:{_short(before.get(k))}->{_short(row.get(k))}"  # type: ignore[union-attr]
            for k in changed
            if k not in ("updated_at",)
        ][:3]
        text = " ".join(parts) or json.dumps(row, default=str)
        return text[:width]

    def to_json(self) -> dict[str, Any]:
        """One `--json` line: coordinates, timestamp, key, op, trace id, decoded value."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "key": self.key if self.key is not None else self.key_text() or None,
            "op": self.op,
            "trace_id": self.trace_id,
            "headers": {name: value.decode("utf-8", "replace") for name, value in self.headers},
            "value": self.value,
            "decode_error": self.decode_error,
        }


def _short(value: Any, limit: int = 24) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
