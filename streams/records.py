"""Typed records that flow through the chain: change -> enriched -> routed -> decision.

Field names follow Debezium's envelope (`op`, `before`, `after`, `source`,
`ts_ms`), so the same records serve the Faust agents and the replay dry run.
Rows are plain dicts as the Avro decoder gives them (numeric -> Decimal,
timestamptz -> ISO-8601 text, jsonb -> JSON text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, TypeVar

Row = Mapping[str, Any]
_SCALARS = (str, int, float, bool)
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class SourceCoordinates:
    """Where a Kafka record was read: the identity of one delivery."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class ChangeEnvelope:
    """Debezium's change envelope (value of a `lab.<schema>.<table>` record)."""

    op: str  # c (create), u (update), d (delete), r (snapshot read), t (truncate)
    before: Row | None
    after: Row | None
    source: Row
    ts_ms: int | None = None
    transaction: Row | None = None

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> ChangeEnvelope:
        get = value.get
        op = value["op"]
        # built without the dataclass __init__ (see `fast_constructor`): once per record
        return _make_envelope(op if type(op) is str else str(op), get("before"),
                              get("after"), get("source") or {}, get("ts_ms"),
                              get("transaction"))

    @property
    def table(self) -> str:
        return str(self.source.get("table", ""))

    @property
    def lsn(self) -> int | None:
        lsn = self.source.get("lsn")
        return int(lsn) if lsn is not None else None

    @property
    def committed_at_ms(self) -> int | None:
        """When the change committed in the database (source.ts_ms), else when it was read."""
        ts = self.source.get("ts_ms")
        return int(ts) if ts is not None else self.ts_ms

    @property
    def row(self) -> Row | None:
        """The row as it is now: `after`, or `before` for a delete."""
        return self.after if self.after is not None else self.before


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One decoded CDC record: envelope, primary key, coordinates and headers."""

    envelope: ChangeEnvelope
    primary_key: Row
    coordinates: SourceCoordinates
    headers: Headers = ()

    @property
    def table(self) -> str:
        return self.envelope.table

    @property
    def primary_key_text(self) -> str:
        """The primary key as canonical JSON (sorted keys), e.g. `{"id":"run-1"}`."""
        return key_text(self.primary_key)

    @property
    def change_id(self) -> str:
        """Identity of the change itself: table + primary key + source LSN.

        The same row change read twice (redelivery, replay, another offset after a
        connector restart) has the same change_id.
        """
        source = self.envelope.source  # read directly: the properties cost a call each
        lsn = source.get("lsn")
        return (f"{source.get('table', '')}:{key_text(self.primary_key)}:"
                f"{int(lsn) if lsn is not None else None}")


@dataclass(frozen=True, slots=True)
class Enrichment:
    """Reference rows joined to a change, and whether any was not (yet) known."""

    complete: bool = True
    missing: tuple[str, ...] = ()  # e.g. ("instrument:hplc-01",)
    tenant: Row | None = None
    experiment: Row | None = None
    instrument: Row | None = None
    samples: tuple[Row, ...] = ()
    inventory: Row | None = None

    def as_view(self) -> dict[str, Any]:
        """`to_dict()` without copying the rows (for `RoutedEvent.lazy_document`)."""
        return {"complete": self.complete, "missing": self.missing, "tenant": self.tenant,
                "experiment": self.experiment, "instrument": self.instrument,
                "samples": self.samples, "inventory": self.inventory}

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "missing": list(self.missing),
            "tenant": _plain(self.tenant),
            "experiment": _plain(self.experiment),
            "instrument": _plain(self.instrument),
            "samples": [_plain(sample) for sample in self.samples],
            "inventory": _plain(self.inventory),
        }


@dataclass(frozen=True, slots=True)
class EnrichedEvent:
    change: ChangeRecord
    enrichment: Enrichment

    @property
    def tenant_id(self) -> str | None:
        return _tenant_of(self.change.envelope.row, self.enrichment)

    @property
    def experiment_id(self) -> str | None:
        row = self.change.envelope.row or {}
        if self.change.table == "experiments":
            return row.get("id")
        return row.get("experiment_id")


@dataclass(frozen=True, slots=True)
class RoutedEvent:
    """A typed lab event on `lab.routed.<kind>`."""

    kind: str  # e.g. "hplc.completed"
    event_id: str  # what a job key is derived from (see route.py)
    occurred_at_ms: int | None
    tenant_id: str | None
    experiment_id: str | None
    payload: Mapping[str, Any]  # the kind's own fields (documented in docs/topics.md)
    change: ChangeRecord
    enrichment: Enrichment

    def field_value(self, path: str) -> Any:
        """A dotted path into the event: `payload.peaks`, `enrichment.instrument.name`."""
        return lookup_path(self.as_document(), path)

    def origin(self) -> dict[str, Any]:
        change = self.change
        return {
            "topic": change.coordinates.topic,
            "partition": change.coordinates.partition,
            "offset": change.coordinates.offset,
            "lsn": change.envelope.lsn,
            "table": change.table,
            "primary_key": change.primary_key_text,
            "op": change.envelope.op,
        }

    def as_document(self) -> dict[str, Any]:
        """The event as a plain dict: what rule conditions and placeholders see."""
        return {key: _plain(value) for key, value in self.lazy_document().items()}

    def lazy_document(self) -> Mapping[str, Any]:
        """`as_document()` without the copies: each part made when a rule looks at it,
        values as they are (callers `plain()` the leaf they read).

        A rule reads one or two paths (`payload.run_id`); copying the whole document
        (payload, enrichment rows, the changed row) was most of the trigger's cost.
        """
        return _EventDocument(self)


_DOCUMENT_PARTS: dict[str, Any] = {
    "kind": lambda event: event.kind,
    "event_id": lambda event: event.event_id,
    "occurred_at_ms": lambda event: event.occurred_at_ms,
    "tenant_id": lambda event: event.tenant_id,
    "experiment_id": lambda event: event.experiment_id,
    "payload": lambda event: event.payload,
    "origin": lambda event: event.origin(),
    "row": lambda event: event.change.envelope.row,
    "enrichment": lambda event: event.enrichment.as_view(),
}


class _EventDocument(Mapping[str, Any]):
    """A read-only view of `RoutedEvent.as_document()` that builds each part on first use."""

    __slots__ = ("_built", "_event")

    def __init__(self, event: RoutedEvent) -> None:
        self._event = event
        self._built: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._built[key]
        except KeyError:
            pass
        value = _DOCUMENT_PARTS[key](self._event)  # KeyError for an unknown part
        self._built[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in _DOCUMENT_PARTS

    def __iter__(self) -> Iterator[str]:
        return iter(_DOCUMENT_PARTS)

    def __len__(self) -> int:
        return len(_DOCUMENT_PARTS)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the trigger decided for one (event, rule): fired, skipped (and why) or failed."""

    outcome: str  # "fired" | "skipped" | "failed"
    reason: str  # machine-readable: fired, no_rule_for_kind, rule_disabled, ...
    detail: str  # one human sentence naming the field and values
    event_kind: str | None
    event_id: str
    rule_id: str | None = None
    job_key: str | None = None
    tenant_id: str | None = None
    experiment_id: str | None = None
    command: tuple[str, ...] = ()
    decided_at_ms: int = 0
    origin: SourceCoordinates | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


_T = TypeVar("_T")


def fast_constructor(cls: type[_T]) -> Callable[..., _T]:
    """`cls(*values)` for a frozen, slotted dataclass, every field given positionally,
    at about half the cost of its `__init__`.

    The chain builds a `ChangeRecord` (and its envelope and coordinates) per record:
    the three frozen `__init__`s, each field set through `object.__setattr__`, were
    2.4 µs of the ≈ 20 µs a replay dry run spends on a record (docs/BENCHMARKS.md,
    "Session 5: replay speed"). This sets each slot through its own descriptor, the
    same slot `__init__` sets, so the object is the same in every way (fields, eq,
    hash, repr, immutability); no defaults and no `__post_init__` (none of these has
    one). Generated once per class, like the dataclass's own `__init__`.
    """
    names = [item.name for item in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    self = _new(_cls)"]
    for name in names:
        scope[f"_set_{name}"] = cls.__dict__[name].__set__  # the slot's member descriptor
        lines.append(f"    _set_{name}(self, {name})")
    lines.append("    return self")
    # the source is made from the dataclass's own field names only
    exec("\n".join(lines), scope)
    maker: Callable[..., _T] = scope["make"]
    maker.__qualname__ = maker.__name__ = f"make_{cls.__name__}"
    return maker


make_coordinates = fast_constructor(SourceCoordinates)
_make_envelope = fast_constructor(ChangeEnvelope)
make_change_record = fast_constructor(ChangeRecord)


# what json.dumps writes unchanged inside quotes: printable ASCII but `"` and `\`
_JSON_SAFE = re.compile(r'[ !#-\[\]-~]*\Z').match


def key_text(primary_key: Row) -> str:
    """`json.dumps(dict(key), sort_keys=True, separators=(",", ":"), default=str)`.

    A one-column key of plain text or an integer (every lab table's) is written by
    hand: json.dumps cost 4 µs of the chain's per-event time, and every job key and
    change id is made from this text. Anything else goes through json.dumps.
    """
    if type(primary_key) is dict and len(primary_key) == 1:
        for name, value in primary_key.items():
            if type(name) is str and _JSON_SAFE(name):
                if type(value) is str and _JSON_SAFE(value):
                    return f'{{"{name}":"{value}"}}'
                if type(value) is int:
                    return f'{{"{name}":{value}}}'
    return json.dumps(dict(primary_key), sort_keys=True, separators=(",", ":"), default=str)


def lookup_path(document: Any, path: str) -> Any:
    """Follow `a.b.0.c` through dicts and lists; raises KeyError naming the first missing part."""
    current = document
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise KeyError(part)
    return current


def _tenant_of(row: Row | None, enrichment: Enrichment) -> str | None:
    if row is not None and row.get("tenant_id"):
        return str(row["tenant_id"])
    if enrichment.experiment is not None and enrichment.experiment.get("tenant_id"):
        return str(enrichment.experiment["tenant_id"])
    if enrichment.tenant is not None and enrichment.tenant.get("id"):
        return str(enrichment.tenant["id"])
    return None


def _plain(value: Any) -> Any:
    """JSON-friendly copy: Decimal -> float, bytes -> hex, tuples -> lists."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def plain(value: Any) -> Any:
    return _plain(value)
