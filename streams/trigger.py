"""Decide, for one routed event, which trigger rules fire and why the others do not.

`decide(event, rules, now=...)` is pure. Rules come from the lab table
`trigger_rules` (streamed by CDC, see `streams.reference`). For every rule of the
event's kind it returns one `Decision`:

- `fired`: the job request can be built (`job_key`, filled `command`);
- `skipped` with `reason`: `no_rule_for_kind` (one decision, no rule id),
  `rule_disabled`, `tenant_mismatch`, `condition_false` (names the field, the
  value seen and the value wanted), `placeholder_missing`;
- `failed` with `rule_invalid` when the rule itself cannot be used.

`job_key` is derived from the rule id and the event identity (table + primary
key + source LSN; for expiring lots, the lot), so a redelivered or replayed
event maps to the same job and the job runner launches it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from streams.records import Decision, RoutedEvent, Row, lookup_path, plain

SHARED_TENANT = "shared"  # jobs of lab-wide events (inventory, fridges) have no tenant
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")


class RuleInvalid(ValueError):
    """A trigger_rules row that cannot be used (bad command, env or condition)."""


@dataclass(frozen=True)
class TriggerRule:
    id: str
    event_kind: str
    command: tuple[str, ...]
    tenant_id: str | None = None
    enabled: bool = True
    condition: Mapping[str, Any] = field(default_factory=dict)
    backend: str = "local"
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: int = 600
    max_concurrency: int = 4

    @classmethod
    def from_row(cls, row: Row) -> TriggerRule:
        """A rule from its CDC row (jsonb columns arrive as JSON text)."""
        command = _json(row.get("command"), "command")
        condition = _json(row.get("condition") or "{}", "condition")
        env = _json(row.get("env") or "{}", "env")
        if not isinstance(command, list) or not command:
            raise RuleInvalid(f"rule {row.get('id')}: command must be a non-empty JSON array")
        if not isinstance(condition, dict):
            raise RuleInvalid(f"rule {row.get('id')}: condition must be a JSON object")
        if not isinstance(env, dict):
            raise RuleInvalid(f"rule {row.get('id')}: env must be a JSON object")
        return cls(
            id=str(row["id"]),
            event_kind=str(row.get("event_kind")),
            command=tuple(str(part) for part in command),
            tenant_id=row.get("tenant_id"),
            enabled=bool(row.get("enabled", True)),
            condition=condition,
            backend=str(row.get("backend") or "local"),
            image=row.get("image"),
            env={str(k): str(v) for k, v in env.items()},
            timeout_s=int(row.get("timeout_s") or 600),
            max_concurrency=int(row.get("max_concurrency") or 4),
        )


def _json(value: Any, column: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise RuleInvalid(f"{column} is not valid JSON: {exc}") from exc


def job_key(rule_id: str, event_id: str) -> str:
    """Deterministic: the same rule and event identity give the same key, always."""
    digest = hashlib.sha256(f"{rule_id}\x1f{event_id}".encode()).hexdigest()[:32]
    return f"{rule_id}:{digest}"


def decide(
    event: RoutedEvent,
    rules: Iterable[TriggerRule | Row],
    *,
    now: datetime,
) -> list[Decision]:
    """One decision per rule of `event.kind`, or one `no_rule_for_kind` decision."""
    return decide_at(event, rules, int(now.timestamp() * 1000))


def decide_at(
    event: RoutedEvent,
    rules: Iterable[TriggerRule | Row],
    decided_at_ms: int,
) -> list[Decision]:
    """`decide` with the decision time in ms (a batch computes it once)."""
    base = _Base(event, decided_at_ms)
    document: Mapping[str, Any] | None = None  # built once, part by part as rules need it
    decisions: list[Decision] = []
    for rule_or_row in rules:
        if isinstance(rule_or_row, TriggerRule):
            rule = rule_or_row
        else:
            if rule_or_row.get("event_kind") != event.kind:
                continue
            try:
                rule = TriggerRule.from_row(rule_or_row)
            except (RuleInvalid, KeyError, TypeError, ValueError) as exc:
                decisions.append(base.decision("failed", "rule_invalid", str(exc),
                                               rule_id=str(rule_or_row.get("id"))))
                continue
        if rule.event_kind == event.kind:
            if document is None:
                document = event.lazy_document()
            decisions.append(_decide_one(base, rule, document))
    if not decisions:
        return [base.decision("skipped", "no_rule_for_kind",
                              f"no trigger rule has event_kind {event.kind!r}")]
    if len(decisions) > 1:
        decisions.sort(key=_rule_id_of)
    return decisions


def _rule_id_of(decision: Decision) -> str:
    return decision.rule_id or ""


def parse_rules(rules: Iterable[TriggerRule | Row]) -> list[TriggerRule | Row]:
    """Rows parsed into `TriggerRule`s once; a row that does not parse stays a row, so
    `decide` still reports it (`rule_invalid`) for the events of its kind."""
    parsed: list[TriggerRule | Row] = []
    for rule in rules:
        if not isinstance(rule, TriggerRule):
            with contextlib.suppress(RuleInvalid, KeyError, TypeError, ValueError):
                rule = TriggerRule.from_row(rule)
        parsed.append(rule)
    return parsed


def rules_by_kind(rules: Iterable[TriggerRule | Row]) -> dict[Any, list[TriggerRule | Row]]:
    """`rules` grouped by event kind, in their order (what `decide` looks at per event)."""
    groups: dict[Any, list[TriggerRule | Row]] = {}
    for rule in rules:
        kind = rule.event_kind if isinstance(rule, TriggerRule) else rule.get("event_kind")
        if isinstance(kind, str):  # any other value equals no event kind: never looked at
            groups.setdefault(kind, []).append(rule)
    return groups


@dataclass(frozen=True, slots=True)
class _Base:
    event: RoutedEvent
    decided_at_ms: int

    def decision(self, outcome: str, reason: str, detail: str, **fields: Any) -> Decision:
        event = self.event
        return Decision(
            outcome=outcome, reason=reason, detail=detail, event_kind=event.kind,
            event_id=event.event_id, tenant_id=event.tenant_id,
            experiment_id=event.experiment_id, decided_at_ms=self.decided_at_ms,
            origin=event.change.coordinates, **fields,
        )


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    """A rule's condition paths and command templates, split once instead of per event."""

    # (path, its parts, wanted value), sorted by path as the mismatch check reads them
    conditions: tuple[tuple[str, tuple[str, ...], Any], ...]
    # per command part: the text itself, or its pieces (text, or (path, parts) to fill)
    command: tuple[str | tuple[str | tuple[str, tuple[str, ...]], ...], ...]


_COMPILED: dict[int, tuple[TriggerRule, _CompiledRule]] = {}


def _compiled(rule: TriggerRule) -> _CompiledRule:
    # by identity: the store keeps one TriggerRule per rule version, so a rule edited in
    # the lab DB is a new object and compiles anew; the entry holds the rule, so its
    # id is not reused while cached
    entry = _COMPILED.get(id(rule))
    if entry is not None and entry[0] is rule:
        return entry[1]
    if len(_COMPILED) > 10_000:
        _COMPILED.clear()
    compiled = _CompiledRule(
        conditions=tuple((path, tuple(path.split(".")), rule.condition[path])
                         for path in sorted(rule.condition)),
        command=tuple(_template(part) for part in rule.command),
    )
    _COMPILED[id(rule)] = (rule, compiled)
    return compiled


def _template(text: str) -> str | tuple[str | tuple[str, tuple[str, ...]], ...]:
    if "{" not in text or _PLACEHOLDER.search(text) is None:
        return text
    pieces: list[str | tuple[str, tuple[str, ...]]] = []
    at = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > at:
            pieces.append(text[at:match.start()])
        pieces.append((match.group(1), tuple(match.group(1).split("."))))
        at = match.end()
    if at < len(text):
        pieces.append(text[at:])
    return tuple(pieces)


def _decide_one(base: _Base, rule: TriggerRule, document: Mapping[str, Any]) -> Decision:
    event = base.event
    if not rule.enabled:
        return base.decision("skipped", "rule_disabled", f"rule {rule.id} is disabled",
                             rule_id=rule.id)
    if rule.tenant_id is not None and rule.tenant_id != event.tenant_id:
        seen = event.tenant_id if event.tenant_id is not None else "unknown"
        why = "" if event.enrichment.complete else (
            f" (enrichment incomplete, missing: {', '.join(event.enrichment.missing)})")
        return base.decision("skipped", "tenant_mismatch",
                             f"rule {rule.id} is for tenant {rule.tenant_id!r}, "
                             f"event tenant is {seen!r}{why}", rule_id=rule.id)
    compiled = _compiled(rule)
    mismatch = _compiled_mismatch(compiled.conditions, document)
    if mismatch is not None:
        return base.decision("skipped", "condition_false", f"rule {rule.id}: {mismatch}",
                             rule_id=rule.id)
    try:
        command = tuple(part if isinstance(part, str) else _fill(part, document)
                        for part in compiled.command)
    except KeyError as exc:
        return base.decision("skipped", "placeholder_missing",
                             f"rule {rule.id}: placeholder {{{exc.args[0]}}} has no value "
                             f"in the {event.kind} event", rule_id=rule.id)
    return base.decision("fired", "fired", f"rule {rule.id} fired", rule_id=rule.id,
                         job_key=job_key(rule.id, event.event_id), command=command)


def _compiled_mismatch(conditions: tuple[tuple[str, tuple[str, ...], Any], ...],
                       document: Mapping[str, Any]) -> str | None:
    for path, parts, wanted in conditions:
        try:
            seen = _walk(document, parts)
        except KeyError:
            return f"condition field {path} is absent, wanted {json.dumps(wanted)}"
        if not _equal(seen, wanted):
            return (f"condition field {path} is {json.dumps(plain(seen), default=str)}, "
                    f"wanted {json.dumps(wanted)}")
    return None


def _walk(document: Any, parts: tuple[str, ...]) -> Any:
    """`lookup_path` over a path split once (same results, same KeyError)."""
    current = document
    for part in parts:
        if type(current) is dict:
            if part not in current:
                raise KeyError(part)
            current = current[part]
        elif isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise KeyError(part)
    return current


def _fill(pieces: tuple[str | tuple[str, tuple[str, ...]], ...],
          document: Mapping[str, Any]) -> str:
    """`fill_placeholders` over a template split once."""
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        path, parts = piece
        try:
            value = _walk(document, parts)
        except KeyError:
            raise KeyError(path) from None
        out.append(_placeholder_text(path, value))
    return "".join(out)


def _placeholder_text(path: str, value: Any) -> str:
    if value is None:
        raise KeyError(path)
    if type(value) is str:
        return value
    if type(value) is int:  # what json.dumps gives, without its machinery
        return str(value)
    value = plain(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    return lookup_path(document, path)


def _equal(seen: Any, wanted: Any) -> bool:
    if isinstance(seen, bool) or isinstance(wanted, bool):
        return seen is wanted
    if isinstance(seen, int | float | Decimal) and isinstance(wanted, int | float | Decimal):
        return Decimal(str(seen)) == Decimal(str(wanted))
    return bool(plain(seen) == wanted)


def fill_placeholders(template: str, document: Mapping[str, Any]) -> str:
    """`"--run={payload.run_id}"` -> `"--run=run-1"`; KeyError(path) when a value is absent."""

    def value_of(match: re.Match[str]) -> str:
        path = match.group(1)
        try:
            value = _lookup(document, path)
        except KeyError:
            raise KeyError(path) from None
        return _placeholder_text(path, value)

    return _PLACEHOLDER.sub(value_of, template)


def job_request(
    decision: Decision,
    rule: TriggerRule,
    *,
    traceparent: str | None,
    tracestate: str | None,
) -> Any:
    """The `streams.jobs.JobRequest` for a fired decision (trace context kept)."""
    from streams.jobs import JobRequest

    assert decision.outcome == "fired" and decision.job_key is not None
    origin = decision.origin
    return JobRequest(
        job_key=decision.job_key,
        rule_id=rule.id,
        tenant_id=decision.tenant_id or rule.tenant_id or SHARED_TENANT,
        experiment_id=decision.experiment_id,
        backend=rule.backend,
        image=rule.image,
        command=decision.command,
        env=dict(rule.env),
        timeout_s=float(rule.timeout_s),
        max_concurrency=rule.max_concurrency,
        source_topic=origin.topic if origin else None,
        source_partition=origin.partition if origin else None,
        source_offset=origin.offset if origin else None,
        traceparent=traceparent,
        tracestate=tracestate,
        event_kind=decision.event_kind,
    )
