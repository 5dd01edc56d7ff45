"""Avro schemas of the routed topics (`lab.routed.<kind>`), one per kind.

Every routed record has the same outer fields (`kind`, `event_id`,
`occurred_at_ms`, `tenant_id`, `experiment_id`, `origin`, `enrichment`) and a
kind-specific `payload` record. Schemas are registered under `<topic>-value`
(TopicNameStrategy) in the same registry the CDC connector uses; each field has
a `doc`, from which docs/topics.md is written (`python -m streams.schemas`).
"""

from __future__ import annotations

from typing import Any

from streams import route
from streams.records import Enrichment, RoutedEvent, Row, plain

NAMESPACE = "io.labstream.routed"


def _f(name: str, avro_type: Any, doc: str, *, optional: bool = False) -> dict[str, Any]:
    if optional:
        return {"name": name, "type": ["null", avro_type], "default": None, "doc": doc}
    return {"name": name, "type": avro_type, "doc": doc}


_STR, _LONG, _DOUBLE, _BOOL, _INT = "string", "long", "double", "boolean", "int"

_PAYLOADS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    route.HPLC_COMPLETED: ("HplcCompletedPayload", [
        _f("run_id", _STR, "runs.id"),
        _f("experiment_id", _STR, "runs.experiment_id"),
        _f("instrument_id", _STR, "runs.instrument_id"),
        _f("instrument_name", _STR, "instruments.name (null if not known yet)", optional=True),
        _f("started_at", _STR, "runs.started_at, ISO-8601 UTC", optional=True),
        _f("finished_at", _STR, "runs.finished_at, ISO-8601 UTC", optional=True),
        _f("peaks", {"type": "array", "items": {
            "type": "record", "name": "Peak", "fields": [
                _f("rt_min", _DOUBLE, "retention time, minutes", optional=True),
                _f("area", _DOUBLE, "peak area", optional=True),
                _f("height", _DOUBLE, "peak height", optional=True)]}},
           "runs.result.peaks, in the order the instrument reported them"),
        _f("peak_count", _INT, "number of peaks"),
    ]),
    route.RUN_FAILED: ("RunFailedPayload", [
        _f("run_id", _STR, "runs.id"),
        _f("experiment_id", _STR, "runs.experiment_id"),
        _f("instrument_id", _STR, "runs.instrument_id"),
        _f("started_at", _STR, "runs.started_at, ISO-8601 UTC", optional=True),
        _f("finished_at", _STR, "runs.finished_at, ISO-8601 UTC", optional=True),
        _f("error", _STR, "runs.error", optional=True),
    ]),
    route.EXPERIMENT_SUBMITTED: ("ExperimentSubmittedPayload", [
        _f("experiment_id", _STR, "experiments.id"),
        _f("kind", _STR, "experiments.kind: hplc, synthesis, cell-culture, lc-ms, plate-read"),
        _f("title", _STR, "experiments.title"),
        _f("submitted_by", _STR, "experiments.submitted_by"),
        _f("priority", _INT, "experiments.priority, 0..100"),
        _f("protocol", _STR, "experiments.protocol as JSON text"),
    ]),
    route.INVENTORY_LOW: ("InventoryLowPayload", [
        _f("item_id", _STR, "inventory_items.id"),
        _f("name", _STR, "inventory_items.name"),
        _f("lot", _STR, "inventory_items.lot"),
        _f("unit", _STR, "inventory_items.unit"),
        _f("location", _STR, "inventory_items.location"),
        _f("quantity", _DOUBLE, "quantity after the change (now below reorder_level)"),
        _f("reorder_level", _DOUBLE, "inventory_items.reorder_level"),
    ]),
    route.LOT_EXPIRING: ("LotExpiringPayload", [
        _f("item_id", _STR, "inventory_items.id"),
        _f("name", _STR, "inventory_items.name"),
        _f("lot", _STR, "inventory_items.lot"),
        _f("unit", _STR, "inventory_items.unit"),
        _f("location", _STR, "inventory_items.location"),
        _f("quantity", _DOUBLE, "quantity in stock"),
        _f("expires_at", _STR, "inventory_items.expires_at, ISO-8601 UTC"),
        _f("days_left", _DOUBLE, "days from the change's commit time to expires_at"),
    ]),
    route.FRIDGE_EXCURSION: ("FridgeExcursionPayload", [
        _f("reading_id", _LONG, "sensor_readings.id", optional=True),
        _f("sensor_id", _STR, "sensor_readings.sensor_id"),
        _f("instrument_id", _STR, "the fridge (instruments.id)", optional=True),
        _f("reason", _STR, "temperature (above threshold_celsius) or door_open"),
        _f("celsius", _DOUBLE, "the temperature read (temperature readings)", optional=True),
        _f("door_open", _BOOL, "the door state (door readings)", optional=True),
        _f("threshold_celsius", _DOUBLE, "the limit in force (default 8.0)"),
        _f("read_at", _STR, "sensor_readings.read_at, ISO-8601 UTC", optional=True),
    ]),
}

_REF_FIELDS: dict[str, tuple[str, ...]] = {
    "tenant": ("id", "name", "tier"),
    "experiment": ("id", "tenant_id", "kind", "status", "title", "submitted_by"),
    "instrument": ("id", "name", "kind", "location", "status"),
    "sample": ("id", "name", "material", "volume_ul"),
    "inventory": ("id", "name", "lot", "unit", "location"),
}


def _ref_record(name: str) -> dict[str, Any]:
    return {"type": "record", "name": name.capitalize() + "Ref", "fields": [
        _f(column, _STR, f"{name} {column} (as text)", optional=True)
        for column in _REF_FIELDS[name]]}


def _origin() -> dict[str, Any]:
    return {"type": "record", "name": "Origin", "fields": [
        _f("topic", _STR, "CDC topic the change was read from"),
        _f("partition", _INT, "its partition"),
        _f("offset", _LONG, "its offset"),
        _f("lsn", _LONG, "source.lsn of the change (PostgreSQL WAL position)", optional=True),
        _f("table", _STR, "source table"),
        _f("primary_key", _STR, "primary key as canonical JSON, e.g. {\"id\":\"run-1\"}"),
        _f("op", _STR, "Debezium op of the change: c or u"),
    ]}


def _enrichment() -> dict[str, Any]:
    return {"type": "record", "name": "Enrichment", "fields": [
        _f("complete", _BOOL, "false when a reference row was not known after the wait"),
        _f("missing", {"type": "array", "items": _STR},
           "what was missing, e.g. instrument:hplc-07"),
        _f("tenant", _ref_record("tenant"), "the tenant", optional=True),
        _f("experiment", _ref_record("experiment"), "the experiment", optional=True),
        _f("instrument", _ref_record("instrument"), "the instrument", optional=True),
        _f("samples", {"type": "array", "items": _ref_record("sample")},
           "samples of the experiment"),
        _f("inventory", _ref_record("inventory"), "the inventory item", optional=True),
    ]}


def routed_schema(kind: str) -> dict[str, Any]:
    payload_name, payload_fields = _PAYLOADS[kind]
    record_name = "".join(part.capitalize() for part in kind.replace("_", ".").split("."))
    return {
        "type": "record",
        "name": record_name,
        "namespace": NAMESPACE,
        "doc": f"A {kind} lab event, routed from a CDC change (see docs/topics.md).",
        "fields": [
            _f("kind", _STR, f"always {kind}"),
            _f("event_id", _STR, "event identity: table:primary_key:lsn (lots: the lot)"),
            _f("occurred_at_ms", _LONG, "commit time of the change, Unix ms", optional=True),
            _f("tenant_id", _STR, "tenant (null for lab-wide events)", optional=True),
            _f("experiment_id", _STR, "experiment, when there is one", optional=True),
            _f("payload", {"type": "record", "name": payload_name, "fields": payload_fields},
               "the kind's own fields"),
            _f("origin", _origin(), "the CDC record this event came from"),
            _f("enrichment", _enrichment(), "reference data joined to the change"),
        ],
    }


def _ref(name: str, row: Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {column: None if row.get(column) is None else str(plain(row.get(column)))
            for column in _REF_FIELDS[name]}


def enrichment_record(enrichment: Enrichment) -> dict[str, Any]:
    return {
        "complete": enrichment.complete,
        "missing": list(enrichment.missing),
        "tenant": _ref("tenant", enrichment.tenant),
        "experiment": _ref("experiment", enrichment.experiment),
        "instrument": _ref("instrument", enrichment.instrument),
        "samples": [_ref("sample", sample) for sample in enrichment.samples],
        "inventory": _ref("inventory", enrichment.inventory),
    }


def routed_record(event: RoutedEvent) -> dict[str, Any]:
    """The Avro datum for `event` (matches `routed_schema(event.kind)`)."""
    return {**routed_head(event), "enrichment": enrichment_record(event.enrichment)}


def routed_head(event: RoutedEvent, *, plain_payload: bool = True) -> dict[str, Any]:
    """Every field of the datum but the last one, `enrichment` (`plain_payload=False`:
    the payload as it is, for a writer that refuses what is not Avro-ready)."""
    return {
        "kind": event.kind,
        "event_id": event.event_id,
        "occurred_at_ms": event.occurred_at_ms,
        "tenant_id": event.tenant_id,
        "experiment_id": event.experiment_id,
        "payload": plain(event.payload) if plain_payload else event.payload,
        "origin": event.origin(),
    }


def _field_rows(fields: list[dict[str, Any]], prefix: str, depth: int = 0) -> list[str]:
    rows = []
    for item in fields:
        avro_type = item["type"]
        nullable = isinstance(avro_type, list)
        inner = avro_type[1] if nullable else avro_type
        type_name = inner if isinstance(inner, str) else inner.get("type")
        items = inner.get("items") if isinstance(inner, dict) else None
        if items is not None:
            type_name = f"array<{items if isinstance(items, str) else items['name']}>"
        rows.append(f"| `{prefix}{item['name']}` | {type_name}{' or null' if nullable else ''}"
                    f" | {item.get('doc', '')} |")
        if depth < 2 and isinstance(inner, dict) and inner.get("type") == "record":
            rows += _field_rows(inner["fields"], f"{prefix}{item['name']}.", depth + 1)
        if depth < 2 and isinstance(items, dict):
            rows += _field_rows(items["fields"], f"{prefix}{item['name']}[].", depth + 1)
    return rows


def schema_markdown(kind: str | None = None) -> str:
    """Markdown field table: the common fields (kind None) or one kind's payload."""
    fields = routed_schema(kind or route.HPLC_COMPLETED)["fields"]
    if kind is None:
        chosen = [field for field in fields if field["name"] != "payload"]
        rows = [row.replace("always hplc.completed", "the kind, e.g. hplc.completed")
                for row in _field_rows(chosen, "")]
    else:
        payload = next(field for field in fields if field["name"] == "payload")
        rows = _field_rows(payload["type"]["fields"], "payload.")
    return "\n".join(["| field | type | meaning |", "|---|---|---|", *rows])


if __name__ == "__main__":  # pragma: no cover - docs helper
    print(f"### Common fields\n\n{schema_markdown()}\n")
    for routed_kind in route.ROUTED_KINDS:
        print(f"### `lab.routed.{routed_kind}`\n\n{schema_markdown(routed_kind)}\n")
