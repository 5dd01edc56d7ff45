"""Classify an enriched change into typed lab events (`lab.routed.<kind>`).

`route(enriched)` is pure and returns zero or more `RoutedEvent`s:

| kind | from | when |
|---|---|---|
| `hplc.completed` | runs | status becomes `completed` and the experiment kind is `hplc` |
| `run.failed` | runs | status becomes `failed` |
| `experiment.submitted` | experiments | created with status `submitted`, or moved back to it |
| `inventory.low` | inventory_items | quantity goes from >= reorder_level to < reorder_level |
| `inventory.lot_expiring` | inventory_items | a lot in stock expires within 7 days (once per lot) |
| `fridge.excursion` | sensor_readings | a fridge above 8 °C, or its door open |

"Becomes" means on the transition (before-image differs), so an unrelated update
of a completed run does not announce it again. Snapshot reads (`op=r`) and
deletes never route: they describe existing state, not something that happened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from streams.records import EnrichedEvent, RoutedEvent, Row

HPLC_COMPLETED = "hplc.completed"
RUN_FAILED = "run.failed"
EXPERIMENT_SUBMITTED = "experiment.submitted"
INVENTORY_LOW = "inventory.low"
LOT_EXPIRING = "inventory.lot_expiring"
FRIDGE_EXCURSION = "fridge.excursion"
ROUTED_KINDS = (HPLC_COMPLETED, RUN_FAILED, EXPERIMENT_SUBMITTED, INVENTORY_LOW, LOT_EXPIRING,
                FRIDGE_EXCURSION)
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class RouteSettings:
    fridge_max_celsius: float = 8.0
    lot_expiry_days: float = 7.0


@dataclass(frozen=True)
class RouteOutcome:
    events: list[RoutedEvent]
    # set when the change looks like it should route but enrichment is too incomplete to tell
    unroutable: str | None = None


def route(
    enriched: EnrichedEvent,
    settings: RouteSettings = RouteSettings(),
    *,
    announced_lots: Mapping[str, str] | None = None,
) -> list[RoutedEvent]:
    return route_explained(enriched, settings, announced_lots=announced_lots).events


def route_explained(
    enriched: EnrichedEvent,
    settings: RouteSettings = RouteSettings(),
    *,
    announced_lots: Mapping[str, str] | None = None,
) -> RouteOutcome:
    """`route`, plus why a change that should have routed could not (incomplete enrichment).

    `announced_lots` maps inventory item id -> lot already announced as expiring.
    """
    envelope = enriched.change.envelope
    if envelope.op not in ("c", "u") or envelope.after is None:
        return RouteOutcome([])
    router = _ROUTERS.get(enriched.change.table)
    if router is None:
        return RouteOutcome([])
    return router(_Context(enriched, settings, announced_lots or {}))


class _Context:
    """One change being routed: its rows read once (a frozen dataclass with properties
    recomputed them on every access, a measurable share of routing)."""

    __slots__ = ("after", "announced_lots", "before", "enriched", "settings")

    def __init__(self, enriched: EnrichedEvent, settings: RouteSettings,
                 announced_lots: Mapping[str, str]) -> None:
        self.enriched = enriched
        self.settings = settings
        self.announced_lots = announced_lots
        envelope = enriched.change.envelope
        self.after: Row = envelope.after or {}
        self.before: Row | None = envelope.before

    def became(self, column: str, value: Any) -> bool:
        was = self.before.get(column) if self.before is not None else None
        return self.after.get(column) == value and was != value

    def event(self, kind: str, payload: dict[str, Any], event_id: str | None = None) -> RoutedEvent:
        enriched = self.enriched
        return RoutedEvent(
            kind=kind,
            event_id=event_id or enriched.change.change_id,
            occurred_at_ms=enriched.change.envelope.committed_at_ms,
            tenant_id=enriched.tenant_id,
            experiment_id=enriched.experiment_id,
            payload=payload,
            change=enriched.change,
            enrichment=enriched.enrichment,
        )


def _run_fields(row: Row) -> dict[str, Any]:
    return {
        "run_id": row.get("id"),
        "experiment_id": row.get("experiment_id"),
        "instrument_id": row.get("instrument_id"),
        "started_at": _text(row.get("started_at")),
        "finished_at": _text(row.get("finished_at")),
    }


def _route_run(ctx: _Context) -> RouteOutcome:
    row, enrichment = ctx.after, ctx.enriched.enrichment
    # the payload's common fields only for a change that routes (most do not)
    if ctx.became("status", "failed"):
        return RouteOutcome([ctx.event(RUN_FAILED, {**_run_fields(row),
                                                    "error": row.get("error")})])
    if not ctx.became("status", "completed"):
        return RouteOutcome([])
    experiment, instrument = enrichment.experiment, enrichment.instrument
    if experiment is not None:
        is_hplc = experiment.get("kind") == "hplc"
    elif instrument is not None and instrument.get("kind") == "hplc":
        is_hplc = True  # experiment unknown: the instrument says HPLC (complete=false tells)
    else:
        return RouteOutcome([], unroutable=(
            f"run {row.get('id')} completed but experiment {row.get('experiment_id')} is not "
            f"known (missing: {', '.join(enrichment.missing)}): cannot tell if it is HPLC"))
    if not is_hplc:
        return RouteOutcome([])
    peaks = _peaks(row.get("result"))
    payload = {**_run_fields(row), "instrument_name": (instrument or {}).get("name"),
               "peaks": peaks, "peak_count": len(peaks)}
    return RouteOutcome([ctx.event(HPLC_COMPLETED, payload)])


def _route_experiment(ctx: _Context) -> RouteOutcome:
    row = ctx.after
    if not ctx.became("status", "submitted"):
        return RouteOutcome([])
    payload = {
        "experiment_id": row.get("id"),
        "kind": row.get("kind"),
        "title": row.get("title") or "",
        "submitted_by": row.get("submitted_by"),
        "priority": int(row.get("priority") or 0),
        "protocol": _json_text(row.get("protocol")),
    }
    return RouteOutcome([ctx.event(EXPERIMENT_SUBMITTED, payload)])


def _route_inventory(ctx: _Context) -> RouteOutcome:
    row, events = ctx.after, []
    if _is_low(row) and (ctx.before is None or not _is_low(ctx.before)):
        events.append(ctx.event(INVENTORY_LOW, {
            **_item(row), "reorder_level": _float(row.get("reorder_level"))}))
    lot_event = _lot_expiring(ctx, ctx.enriched.change.envelope.committed_at_ms)
    return RouteOutcome(events + ([lot_event] if lot_event is not None else []))


def _item(row: Row) -> dict[str, Any]:
    return {"item_id": row.get("id"), "name": row.get("name"), "lot": row.get("lot"),
            "unit": row.get("unit"), "location": row.get("location") or "",
            "quantity": _float(row.get("quantity"))}


def _lot_expiring(ctx: _Context, now_ms: int | None) -> RoutedEvent | None:
    row = ctx.after
    days_left = _days_left(row.get("expires_at"), now_ms)
    announced = ctx.announced_lots.get(str(row.get("id"))) == _lot_identity(row)
    if (days_left is None or not 0 <= days_left <= ctx.settings.lot_expiry_days
            or _number(row.get("quantity")) <= 0 or announced):
        return None
    # identity of the lot, not of this change: announcing it again (after a restart, or
    # by the sweep) maps to the same job key, so a lot triggers at most once per rule
    event_id = f"inventory_items:{row.get('id')}:lot:{_lot_identity(row)}"
    return ctx.event(LOT_EXPIRING, {
        **_item(row), "expires_at": _text(row.get("expires_at")),
        "days_left": round(days_left, 3)}, event_id=event_id)


def expiring_lots(
    latest: list[EnrichedEvent],
    *,
    now_ms: int,
    settings: RouteSettings = RouteSettings(),
    announced_lots: Mapping[str, str] | None = None,
) -> list[RoutedEvent]:
    """The sweep: lots that entered the expiry window with no change to their row.

    `latest` holds the latest change of each inventory item (snapshot reads
    included), enriched; the reference time is `now_ms` instead of the commit time.
    """
    events = []
    for enriched in latest:
        if enriched.change.table != "inventory_items" or enriched.change.envelope.after is None:
            continue
        event = _lot_expiring(_Context(enriched, settings, announced_lots or {}), now_ms)
        if event is not None:
            events.append(event)
    return events


def _route_reading(ctx: _Context) -> RouteOutcome:
    row, enrichment = ctx.after, ctx.enriched.enrichment
    instrument = enrichment.instrument
    if instrument is not None and instrument.get("kind") != "fridge":
        return RouteOutcome([])  # an incubator at 37 °C is not an excursion
    celsius = row.get("celsius")
    limit = ctx.settings.fridge_max_celsius
    if row.get("kind") == "temperature" and celsius is not None and _number(celsius) > limit:
        reason = "temperature"
    elif row.get("kind") == "door" and row.get("door_open") is True:
        reason = "door_open"
    else:
        return RouteOutcome([])
    payload = {
        "reading_id": int(row["id"]) if row.get("id") is not None else None,
        "sensor_id": row.get("sensor_id"),
        "instrument_id": row.get("instrument_id"),
        "reason": reason,
        "celsius": _float(celsius) if celsius is not None else None,
        "door_open": row.get("door_open"),
        "threshold_celsius": float(limit),
        "read_at": _text(row.get("read_at")),
    }
    return RouteOutcome([ctx.event(FRIDGE_EXCURSION, payload)])


_ROUTERS: dict[str, Callable[[_Context], RouteOutcome]] = {
    "runs": _route_run,
    "experiments": _route_experiment,
    "inventory_items": _route_inventory,
    "sensor_readings": _route_reading,
}


def lots_announced(events: list[RoutedEvent]) -> dict[str, str]:
    """item id -> lot identity for the lot_expiring events among `events` (to remember)."""
    return {
        str(event.payload["item_id"]): _lot_identity(event.change.envelope.after or {})
        for event in events
        if event.kind == LOT_EXPIRING
    }


def _lot_identity(row: Row) -> str:
    return f"{row.get('lot')}@{_text(row.get('expires_at'))}"


def _is_low(row: Row) -> bool:
    return _number(row.get("quantity")) < _number(row.get("reorder_level"))


def _days_left(expires_at: Any, now_ms: int | None) -> float | None:
    if expires_at is None or now_ms is None:
        return None
    try:
        expires = datetime.fromisoformat(str(expires_at))
    except ValueError:
        return None
    return (expires.timestamp() * 1000 - now_ms) / _DAY_MS


def _peaks(result: Any) -> list[dict[str, float | None]]:
    document = _json_value(result)
    raw = document.get("peaks") if isinstance(document, dict) else None
    if not isinstance(raw, list):
        return []
    peaks = []
    for peak in raw:
        if isinstance(peak, dict):
            get = peak.get
            rt_min, area, height = get("rt_min"), get("area"), get("height")
            peaks.append({"rt_min": None if rt_min is None else _float(rt_min),
                          "area": None if area is None else _float(area),
                          "height": None if height is None else _float(height)})
    return peaks


# orjson reads an integer beyond 64 bits as a float, json.loads as an int: such text
# (19 digits in a row anywhere) is left to json.loads
_LONG_DIGITS = re.compile(r"\d{19}").search


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        if _LONG_DIGITS(value) is None:
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                pass  # what orjson refuses (NaN, Infinity, lone surrogates): json's say
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _json_text(value: Any) -> str:
    if value is None:
        return "{}"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _number(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def _float(value: Any) -> float:
    if type(value) is float or type(value) is int:  # the JSON numbers of a result: no Decimal
        return float(value)
    return float(_number(value))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
