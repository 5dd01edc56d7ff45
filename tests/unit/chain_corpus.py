"""A fixed corpus of CDC records, reference rows and rules, and what the chain made of it.

`outcomes()` runs every record through decode -> enrich -> route -> decide (the
worker's public functions) and the replay dry run's `evaluate`, and returns plain
JSON. `chain_golden.json` next to this file is that output from the code *before*
the speed work of issue 15 (written with the tree of main at 68cf035):

    PYTHONPATH=/tmp/h15-main .venv/bin/python tests/unit/chain_corpus.py \\
        > tests/unit/chain_golden.json

tests/unit/test_streams_chain_equivalence.py compares today's output with it, so
every decision field, routed payload, enrichment and dry-run line stays the same.
Only names that existed before that work are used here.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

NOW = datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
COMMIT_MS = int(NOW.timestamp() * 1000) - 3_600_000
PEAKS = json.dumps({"peaks": [{"rt_min": 1.1, "area": 10.0, "height": 1},
                              {"rt_min": "2.25", "area": None, "height": 2.0}, "junk"]})

REFERENCE: list[tuple[str, dict[str, Any]]] = [
    ("tenants", {"id": "acme", "name": "Acme", "tier": "standard"}),
    ("tenants", {"id": "beta", "name": "Beta", "tier": "premium"}),
    ("experiments", {"id": "exp-1", "tenant_id": "acme", "kind": "hplc", "status": "running",
                     "title": "t", "submitted_by": "a", "protocol": '{"x": 1}', "priority": 5}),
    ("experiments", {"id": "exp-2", "tenant_id": "beta", "kind": "lc-ms", "status": "running",
                     "title": "u", "submitted_by": "b", "protocol": "{}", "priority": 1}),
    ("instruments", {"id": "hplc-01", "name": "HPLC one", "kind": "hplc", "location": "",
                     "status": "running"}),
    ("instruments", {"id": "fridge-1", "name": "Fridge", "kind": "fridge", "location": "B2",
                     "status": "running"}),
    ("instruments", {"id": "inc-1", "name": "Incubator", "kind": "incubator", "location": "",
                     "status": "running"}),
    ("samples", {"id": "s-2", "tenant_id": "acme", "experiment_id": "exp-1", "name": "b",
                 "material": "m"}),
    ("samples", {"id": "s-1", "tenant_id": "acme", "experiment_id": "exp-1", "name": "a",
                 "material": "m"}),
]


def _rule(rule_id: str, kind: str, command: list[str], **extra: Any) -> dict[str, Any]:
    row = {"id": rule_id, "tenant_id": None, "enabled": True, "event_kind": kind,
           "condition": "{}", "backend": "local", "image": None, "command": json.dumps(command),
           "env": '{"MODE": "x"}', "timeout_s": 60, "max_concurrency": 2}
    row.update(extra)
    return row


RULES = [
    _rule("a-report", "hplc.completed", ["report", "{payload.run_id}", "{payload.peak_count}"]),
    _rule("b-acme", "hplc.completed", ["x", "{enrichment.instrument.name}"],
          condition='{"tenant_id": "acme"}'),
    _rule("c-beta-only", "hplc.completed", ["x"], tenant_id="beta"),
    _rule("d-off", "hplc.completed", ["x"], enabled=False),
    _rule("e-peaks", "hplc.completed", ["p", "{payload.peaks}", "{payload.peaks.0.area}"],
          condition='{"payload.peak_count": 3.0, "enrichment.complete": true}'),
    _rule("f-absent", "hplc.completed", ["x"], condition='{"payload.nothing.here": 1}'),
    _rule("g-missing", "hplc.completed", ["x", "{payload.error}"]),
    _rule("h-failed", "run.failed", ["alert", "{payload.error}", "{origin.offset}"]),
    _rule("i-submitted", "experiment.submitted",
          ["plan", "{payload.experiment_id}", "{payload.priority}", "{row.protocol}"],
          condition='{"payload.kind": "hplc"}'),
    _rule("j-low", "inventory.low", ["order", "{payload.item_id}", "{payload.quantity}"]),
    _rule("k-lot", "inventory.lot_expiring", ["lot", "{payload.lot}", "{payload.days_left}"]),
    _rule("l-fridge", "fridge.excursion", ["page", "{payload.reason}", "{payload.celsius}"],
          condition='{"payload.door_open": false}'),
    _rule("m-fridge-any", "fridge.excursion", ["page", "{payload.sensor_id}"]),
    _rule("n-bad-json", "hplc.completed", ["x"], condition="{not json"),
    _rule("o-bad-command", "run.failed", [], condition="{}"),
    _rule("p-kind-id", "hplc.completed", ["k", "{kind}", "{event_id}", "{occurred_at_ms}"],
          condition='{"origin.table": "runs", "row.status": "completed"}'),
]


def _run(run_id: str, status: str, experiment: str = "exp-1", **extra: Any) -> dict[str, Any]:
    row = {"id": run_id, "experiment_id": experiment, "instrument_id": "hplc-01",
           "status": status, "started_at": "2025-11-24 15:00:00+00", "result": PEAKS}
    row.update(extra)
    return row


def _item(item_id: str, quantity: str, reorder: str, expires: str | None) -> dict[str, Any]:
    return {"id": item_id, "name": "acetonitrile", "lot": f"L-{item_id}", "quantity": quantity,
            "unit": "l", "reorder_level": reorder, "expires_at": expires, "location": "shelf"}


def _reading(reading_id: int, kind: str, instrument: str | None, celsius: str | None,
             door: bool | None) -> dict[str, Any]:
    return {"id": reading_id, "sensor_id": f"sensor-{reading_id}", "instrument_id": instrument,
            "kind": kind, "celsius": celsius, "door_open": door,
            "read_at": "2025-11-24 15:00:00+00"}


CHANGES: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("runs", "u", _run("run-1", "completed"), _run("run-1", "running")),
    ("runs", "c", _run("run-2", "completed"), None),
    ("runs", "u", _run("run-3", "completed", "exp-2"), _run("run-3", "running", "exp-2")),
    ("runs", "u", _run("run-4", "completed", "exp-404"), _run("run-4", "running", "exp-404")),
    ("runs", "u", _run("run-5", "completed", instrument_id="hplc-404", result=None),
     _run("run-5", "running")),
    ("runs", "u", _run("run-6", "completed"), _run("run-6", "completed")),
    ("runs", "u", _run("run-7", "failed", error="pump \"A\" stalled ✗"), _run("run-7", "running")),
    ("runs", "u", _run("run-8", "failed", "exp-404"), _run("run-8", "running", "exp-404")),
    ("runs", "r", _run("run-9", "completed"), None),
    ("runs", "d", None, _run("run-10", "completed")),
    ("runs", "u", _run("run-13", "completed", "exp-404", instrument_id="hplc-404"),
     _run("run-13", "running", "exp-404", instrument_id="hplc-404")),
    ("runs", "u", _run("run-11", "completed", result='{"peaks": "none"}'),
     _run("run-11", "running")),
    ("runs", "u", _run("run-12", "completed", result="not json"), _run("run-12", "running")),
    ("experiments", "c", {"id": "exp-3", "tenant_id": "acme", "kind": "hplc",
                          "status": "submitted", "title": "", "submitted_by": "a",
                          "protocol": '{"steps": [1, 2]}', "priority": 3}, None),
    ("experiments", "u", {"id": "exp-4", "tenant_id": "beta", "kind": "lc-ms",
                          "status": "submitted", "title": "t", "submitted_by": "b",
                          "protocol": "{}", "priority": 0},
     {"id": "exp-4", "tenant_id": "beta", "kind": "lc-ms", "status": "draft", "title": "t",
      "submitted_by": "b", "protocol": "{}", "priority": 0}),
    ("experiments", "c", {"id": "exp-5", "tenant_id": "nobody", "kind": "hplc",
                          "status": "submitted", "title": "t", "submitted_by": "c",
                          "protocol": "{}", "priority": 9}, None),
    ("inventory_items", "u", _item("inv-1", "1.500", "2.000", None),
     _item("inv-1", "2.500", "2.000", None)),
    ("inventory_items", "u", _item("inv-2", "10", "2", "2025-11-27 00:00:00+00"),
     _item("inv-2", "11", "2", "2025-11-27 00:00:00+00")),
    ("inventory_items", "c", _item("inv-3", "0.000", "1.000", "2025-11-25 00:00:00+00"), None),
    ("inventory_items", "c", _item("inv-4", "5", "1", "2026-06-01 00:00:00+00"), None),
    ("inventory_items", "u", _item("inv-5", "0.5", "1", "2025-11-26 12:00:00+00"),
     _item("inv-5", "0.4", "1", "2025-11-26 12:00:00+00")),
    ("sensor_readings", "c", _reading(1, "temperature", "fridge-1", "9.50", None), None),
    ("sensor_readings", "c", _reading(2, "temperature", "fridge-1", "8.00", None), None),
    ("sensor_readings", "c", _reading(3, "door", "fridge-1", None, True), None),
    ("sensor_readings", "c", _reading(4, "temperature", "inc-1", "37.00", None), None),
    ("sensor_readings", "c", _reading(5, "temperature", None, "12.25", False), None),
    ("sensor_readings", "c", _reading(6, "door", "fridge-404", None, False), None),
    ("tenants", "c", {"id": "gamma", "name": "G", "tier": "standard"}, None),
]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return value


def _decision(decision: Any) -> dict[str, Any]:
    origin = decision.origin
    return {"outcome": decision.outcome, "reason": decision.reason, "detail": decision.detail,
            "event_kind": decision.event_kind, "event_id": decision.event_id,
            "rule_id": decision.rule_id, "job_key": decision.job_key,
            "tenant_id": decision.tenant_id, "experiment_id": decision.experiment_id,
            "command": list(decision.command), "decided_at_ms": decision.decided_at_ms,
            "origin": None if origin is None else [origin.topic, origin.partition, origin.offset],
            "extra": _plain(dict(decision.extra))}


def _event(event: Any) -> dict[str, Any]:
    return {"kind": event.kind, "event_id": event.event_id,
            "occurred_at_ms": event.occurred_at_ms, "tenant_id": event.tenant_id,
            "experiment_id": event.experiment_id, "payload": _plain(dict(event.payload)),
            "document": _plain(event.as_document()), "enrichment": event.enrichment.to_dict()}


def encoded_corpus() -> tuple[Any, list[tuple[str, bytes | None, bytes | None]]]:
    from streams.fixtures import LabChanges, MemoryRegistry

    registry = MemoryRegistry()
    changes = LabChanges(registry)
    records = [changes.encode(table, "c", row, lsn=100 + index, commit_ms=COMMIT_MS)
               for index, (table, row) in enumerate(REFERENCE)]
    records += [changes.encode("trigger_rules", "c", row, lsn=200 + index, commit_ms=COMMIT_MS)
                for index, row in enumerate(RULES)]
    records += [changes.encode(table, op, after, before, lsn=1000 + index, commit_ms=COMMIT_MS)
                for index, (table, op, after, before) in enumerate(CHANGES)]
    return registry, records


ANNOUNCED = {"inv-5": "L-inv-5@2025-11-26 12:00:00+00"}


def entry(offset: int, rules_as: str, enriched: Any, outcome: Any,
          decisions: Any) -> dict[str, Any]:
    """One change's way through the chain as plain JSON."""
    change = enriched.change
    return {
        "offset": offset, "rules": rules_as, "table": change.table,
        "change_id": change.change_id, "primary_key": _plain(dict(change.primary_key)),
        # the envelope's own ts_ms is when the fixture was encoded: not compared
        "envelope": _plain({"op": change.envelope.op, "before": change.envelope.before,
                            "after": change.envelope.after, "source": change.envelope.source,
                            "transaction": change.envelope.transaction}),
        "enrichment": enriched.enrichment.to_dict(), "tenant_id": enriched.tenant_id,
        "unroutable": outcome.unroutable,
        "events": [_event(event) for event in outcome.events],
        "decisions": [[_decision(d) for d in made] for made in decisions],
    }


def decoded_corpus() -> tuple[Any, list[Any], Any, list[tuple[int, Any]]]:
    """The corpus encoded (registry, records), the reference store loaded from it, and
    the other changes decoded (with their offsets)."""
    from streams.codec import CdcDecoder
    from streams.records import SourceCoordinates
    from streams.reference import ReferenceStore

    registry, records = encoded_corpus()
    decoder, store = CdcDecoder(registry), ReferenceStore()
    changes = []
    for offset, (topic, key, value) in enumerate(records):
        change = decoder.decode(key, value, SourceCoordinates(topic, 0, offset),
                                (("traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),))
        assert change is not None
        if offset < len(REFERENCE) + len(RULES):
            store.apply_change(change)
        else:
            changes.append((offset, change))
    return registry, records, store, changes


def outcomes() -> dict[str, Any]:
    from replay.decode import EnvelopeDecoder
    from replay.dryrun import evaluate
    from replay.record import ReplayRecord
    from streams.enrich import enrich
    from streams.route import RouteSettings, route_explained
    from streams.trigger import decide

    registry, records, store, changes = decoded_corpus()
    envelopes = EnvelopeDecoder(registry)
    chain, dry = [], []
    for offset, change in changes:
        topic, key, value = records[offset]
        for rules_as in ("parsed", "rows"):
            rules = store.rules() if rules_as == "parsed" else RULES
            enriched = enrich(change, store)
            outcome = route_explained(enriched, RouteSettings(), announced_lots=dict(ANNOUNCED))
            decisions = [decide(event, rules, now=NOW) for event in outcome.events]
            chain.append(entry(offset, rules_as, enriched, outcome, decisions))
        record = ReplayRecord(topic, 0, offset, COMMIT_MS, key, value, []).decode(envelopes)
        result = evaluate(record, store, RULES, now=NOW, settings=RouteSettings())
        value = {name: item for name, item in record.value.items()
                 if name not in ("ts_ms", "ts_us", "ts_ns")}  # encoding time, see above
        dry.append({"line": result.line(), "json": _plain(result.to_json()),
                    "value": _plain(value), "key": _plain(record.key)})
    return {"chain": chain, "dry_run": dry}


if __name__ == "__main__":
    json.dump(outcomes(), sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")
