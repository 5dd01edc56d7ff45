"""Join a change with reference data (tenant, experiment, instrument, samples, inventory).

`enrich(change, reference)` is pure: it reads the reference tables the worker
keeps in memory (see `streams.reference`), never the database. A reference row
that is not known yet (CDC delivers each table on its own topic, so a run can
arrive before its instrument) is **not** guessed: the result says
`complete=False` and lists what is missing, e.g. `["instrument:hplc-07"]`.

The agent first waits for late reference data: `enrich_waiting()` retries every
`poll_s` until the enrichment is complete or `timeout_s` has passed, then goes on
with the incomplete enrichment (route and trigger see `complete=False`). A row
waited for in vain is not waited for again during the next minute (`GaveUp`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from streams.records import ChangeRecord, EnrichedEvent, Enrichment, Row, fast_constructor


class ReferenceData(Protocol):
    """Read access to the reference tables, keyed by primary key (`id`)."""

    def get(self, table: str, key: str) -> Row | None: ...

    def samples_of(self, experiment_id: str) -> Sequence[Row]: ...


class _Lookup:
    """Collects found rows and the names of missing ones for one enrichment."""

    def __init__(self, reference: ReferenceData) -> None:
        self.reference = reference
        self.missing: list[str] = []

    def row(self, table: str, key: object) -> Row | None:
        if key is None or key == "":
            return None
        found = self.reference.get(table, str(key))
        if found is None:
            self.missing.append(f"{_SINGULAR[table]}:{key}")
        return found


_SINGULAR = {
    "tenants": "tenant",
    "experiments": "experiment",
    "instruments": "instrument",
    "inventory_items": "inventory",
    "samples": "sample",
}


_NOTHING = Enrichment()
# `EnrichedEvent(change, enrichment)` without the frozen dataclass __init__ (once per record)
_enriched = fast_constructor(EnrichedEvent)
_CACHE_LIMIT = 100_000


def enrich(change: ChangeRecord, reference: ReferenceData) -> EnrichedEvent:
    """The change with its reference rows; `complete=False` + `missing` when some are unknown.

    A reference with an `enrichments` dict (`ReferenceStore`, replay's `DbReference`)
    caches each enrichment by the ids it was made from: a run's enrichment depends
    only on its experiment_id and instrument_id and the reference rows, and the store
    empties the cache whenever a reference row changes. An `Enrichment` is immutable,
    so events share it.
    """
    row = change.envelope.row
    table = change.table
    builder = _BUILDERS.get(table)
    if builder is None or not row:
        return _enriched(change, _NOTHING)
    cache: dict[tuple[str | None, ...], Enrichment] | None = getattr(reference, "enrichments",
                                                                     None)
    ids = _CACHE_KEYS[table](row) if cache is not None else None
    if ids is None or cache is None:
        return _enriched(change, builder(row, _Lookup(reference)))
    enrichment = cache.get(ids)
    if enrichment is None:
        enrichment = builder(row, _Lookup(reference))
        if len(cache) >= _CACHE_LIMIT:  # bounded between reference changes too
            cache.clear()
        cache[ids] = enrichment
    return _enriched(change, enrichment)


def _text_ids(table: str, *values: object) -> tuple[str | None, ...] | None:
    # text ids or none only: 1, "1" and True would look up the same row but name it
    # differently in `missing`; None (no such reference) looks nothing up
    for value in values:
        if value is not None and type(value) is not str:
            return None
    return (table, *values)  # type: ignore[arg-type]


def _for_run(row: Row, lookup: _Lookup) -> Enrichment:
    experiment = lookup.row("experiments", row.get("experiment_id"))
    instrument = lookup.row("instruments", row.get("instrument_id"))
    tenant = lookup.row("tenants", experiment.get("tenant_id")) if experiment else None
    samples = _samples(lookup, row.get("experiment_id"))
    return _done(lookup, tenant=tenant, experiment=experiment, instrument=instrument,
                 samples=samples)


def _for_experiment(row: Row, lookup: _Lookup) -> Enrichment:
    tenant = lookup.row("tenants", row.get("tenant_id"))
    return _done(lookup, tenant=tenant, samples=_samples(lookup, row.get("id")))


def _for_reading(row: Row, lookup: _Lookup) -> Enrichment:
    return _done(lookup, instrument=lookup.row("instruments", row.get("instrument_id")))


def _for_inventory(row: Row, lookup: _Lookup) -> Enrichment:
    # the item is its own reference row; nothing else to join
    return _done(lookup, inventory=row)


def _samples(lookup: _Lookup, experiment_id: object) -> tuple[Row, ...]:
    if not experiment_id:
        return ()
    # samples are optional: an experiment without samples is not "missing" anything
    return tuple(sorted(lookup.reference.samples_of(str(experiment_id)),
                        key=lambda sample: str(sample.get("id"))))


def _done(lookup: _Lookup, **rows: object) -> Enrichment:
    return Enrichment(complete=not lookup.missing, missing=tuple(lookup.missing), **rows)  # type: ignore[arg-type]


# the ids an enrichment is made from (None: not cached); inventory items are their own row
_CACHE_KEYS: dict[str, Callable[[Row], tuple[str | None, ...] | None]] = {
    "runs": lambda row: _text_ids("runs", row.get("experiment_id"), row.get("instrument_id")),
    "experiments": lambda row: _text_ids("experiments", row.get("tenant_id"), row.get("id")),
    "sensor_readings": lambda row: _text_ids("sensor_readings", row.get("instrument_id")),
    "inventory_items": lambda row: None,
}

_BUILDERS: dict[str, Callable[[Row, _Lookup], Enrichment]] = {
    "runs": _for_run,
    "experiments": _for_experiment,
    "sensor_readings": _for_reading,
    "inventory_items": _for_inventory,
}


async def enrich_waiting(
    change: ChangeRecord,
    reference: ReferenceData,
    *,
    timeout_s: float,
    poll_s: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    gave_up: GaveUp | None = None,
) -> EnrichedEvent:
    """`enrich`, retried while reference data is missing, for at most `timeout_s`.

    With `gave_up`, a row already waited for in vain is not waited for again for
    a while, so a reference row that never comes does not slow every event down.
    """
    deadline = clock() + timeout_s
    enriched = enrich(change, reference)
    if gave_up is not None and gave_up.all_recent(enriched.enrichment.missing, clock()):
        return enriched
    while not enriched.enrichment.complete and clock() < deadline:
        await asyncio.sleep(poll_s)
        enriched = enrich(change, reference)
    if gave_up is not None and not enriched.enrichment.complete:
        gave_up.remember(enriched.enrichment.missing, clock())
    return enriched


class GaveUp:
    """Reference rows waited for in vain, and when (at most `max_entries`)."""

    def __init__(self, *, forget_after_s: float = 60.0, max_entries: int = 10_000) -> None:
        self.forget_after_s = forget_after_s
        self.max_entries = max_entries
        self._since: dict[str, float] = {}

    def all_recent(self, missing: tuple[str, ...], now: float) -> bool:
        return bool(missing) and all(
            now - self._since.get(name, float("-inf")) < self.forget_after_s for name in missing)

    def remember(self, missing: tuple[str, ...], now: float) -> None:
        if len(self._since) >= self.max_entries:
            self._since.clear()
        for name in missing:
            self._since[name] = now
