"""enrich -> route -> decide over a batch of decoded changes (pure, no I/O).

`decide_many(changes, reference, rules, now=...)` gives, for each change, exactly what
the per-record functions give (`enrich`, `route_explained`, `decide`; checked over
the corpus of tests/unit/test_streams_chain_equivalence.py), with the per-batch work
done once instead of per record:

- the rules parsed once (`parse_rules`: a row that does not parse stays a row, so it
  is still reported `rule_invalid`) and grouped by event kind;
- the decision time converted to ms once;
- `announced_lots` updated after each change, as the agent does between records, so
  a lot announced early in the batch is not announced again later in it.

The worker's batch loop calls it on the decoded records of a batch (the reference
store's enrichment cache and the compiled rule conditions are shared by all).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime

from streams.enrich import ReferenceData, enrich
from streams.records import ChangeRecord, Decision, EnrichedEvent, Row
from streams.route import RouteOutcome, RouteSettings, lots_announced, route_explained
from streams.trigger import TriggerRule, decide_at, parse_rules, rules_by_kind

_DEFAULT_SETTINGS = RouteSettings()


@dataclass(frozen=True, slots=True)
class ChainResult:
    """One change through the chain: its enrichment, routing, and decisions per event."""

    enriched: EnrichedEvent
    routed: RouteOutcome
    decisions: tuple[list[Decision], ...]  # one list per routed.events entry, same order

    @property
    def change(self) -> ChangeRecord:
        return self.enriched.change


def decide_many(
    changes: Iterable[ChangeRecord],
    reference: ReferenceData,
    rules: Iterable[TriggerRule | Row],
    *,
    now: datetime,
    settings: RouteSettings = _DEFAULT_SETTINGS,
    announced_lots: MutableMapping[str, str] | None = None,
) -> list[ChainResult]:
    """Each change enriched, routed and decided (see the module docstring)."""
    by_kind = rules_by_kind(parse_rules(rules))
    decided_at_ms = int(now.timestamp() * 1000)
    results = []
    for change in changes:
        enriched = enrich(change, reference)
        routed = route_explained(enriched, settings, announced_lots=announced_lots)
        events = routed.events
        if events:
            decisions = tuple([decide_at(event, by_kind.get(event.kind, ()), decided_at_ms)
                               for event in events])
            if announced_lots is not None:
                announced_lots.update(lots_announced(events))
        else:
            decisions = ()
        results.append(ChainResult(enriched, routed, decisions))
    return results
