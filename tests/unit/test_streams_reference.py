from __future__ import annotations

from streams.codec import CdcDecoder
from streams.fixtures import LabChanges, MemoryRegistry
from streams.records import SourceCoordinates
from streams.reference import ReferenceStore
from streams.trigger import TriggerRule

RULE = {"id": "r1", "event_kind": "run.failed", "enabled": "t", "condition": "{}",
        "backend": "local", "command": '["x"]', "env": "{}", "timeout_s": 5,
        "max_concurrency": 1}


def _apply(store: ReferenceStore, changes: LabChanges, decoder: CdcDecoder, *args, **kw) -> None:
    topic, key, value = changes.encode(*args, **kw)
    change = decoder.decode(key, value, SourceCoordinates(topic, 0, 0))
    assert change is not None
    store.apply_change(change)


def test_cdc_changes_update_rows_samples_index_and_rules() -> None:
    registry = MemoryRegistry()
    changes, decoder, store = LabChanges(registry), CdcDecoder(registry), ReferenceStore()
    sample = {"id": "s1", "tenant_id": "acme", "experiment_id": "e1", "name": "S", "material": ""}
    _apply(store, changes, decoder, "samples", "c", sample)
    assert [s["id"] for s in store.samples_of("e1")] == ["s1"]
    _apply(store, changes, decoder, "samples", "u", dict(sample, experiment_id="e2"), sample)
    assert store.samples_of("e1") == [] and len(store.samples_of("e2")) == 1
    _apply(store, changes, decoder, "trigger_rules", "c", RULE)
    [rule] = store.rules()
    assert isinstance(rule, TriggerRule) and rule.enabled and rule.command == ("x",)
    _apply(store, changes, decoder, "trigger_rules", "u", dict(RULE, enabled=False), RULE)
    assert store.rules()[0].enabled is False
    _apply(store, changes, decoder, "trigger_rules", "d", None, dict(RULE, enabled=False))
    assert store.rules() == [] and store.get("trigger_rules", "r1") is None


def test_unparsable_rule_is_kept_as_row_for_decide_to_report() -> None:
    store = ReferenceStore()
    store.put("trigger_rules", dict(RULE, command="[broken"))
    [kept] = store.rules()
    assert isinstance(kept, dict) and kept["id"] == "r1"


def test_truncate_of_a_reference_table_clears_its_rows_and_indexes() -> None:
    # a truncate record has no key: it used to be dropped before its op was looked at,
    # so a truncated trigger_rules table kept firing its old rules
    registry = MemoryRegistry()
    changes, decoder, store = LabChanges(registry), CdcDecoder(registry), ReferenceStore()
    _apply(store, changes, decoder, "trigger_rules", "c", RULE)
    _apply(store, changes, decoder, "samples", "c",
           {"id": "s1", "tenant_id": "acme", "experiment_id": "e1", "name": "S", "material": ""})
    _apply(store, changes, decoder, "trigger_rules", "t", None)
    assert store.rules() == [] and store.get("trigger_rules", "r1") is None
    assert [s["id"] for s in store.samples_of("e1")] == ["s1"]  # other tables untouched
    _apply(store, changes, decoder, "samples", "t", None)
    assert store.samples_of("e1") == [] and store.count("samples") == 0


def test_follower_logs_each_rule_change_with_why_an_invalid_one_never_fires(caplog) -> None:
    import asyncio
    import logging

    from streams.reference import ReferenceFollower

    registry = MemoryRegistry()
    changes, decoder, store = LabChanges(registry), CdcDecoder(registry), ReferenceStore()
    follower = ReferenceFollower(bootstrap_servers="unused:1", topics={}, store=store,
                                 decoder=decoder)

    class Message:
        def __init__(self, op: str, after: dict | None, before: dict | None = None) -> None:
            self.topic, self.key, self.value = changes.encode("trigger_rules", op, after, before)
            self.partition, self.offset, self.headers = 0, 0, []

    caplog.set_level(logging.INFO, logger="streams.reference")
    asyncio.run(follower._apply_all([
        Message("c", RULE), Message("c", dict(RULE, id="r2", command="[broken")),
        Message("d", None, RULE), Message("t", None)]))
    lines = [r.getMessage() + " " + str(getattr(r, "kv", {})) for r in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0].startswith("trigger rule loaded") and "'rule': 'r1'" in lines[0]
    assert "'event_kind': 'run.failed'" in lines[0]
    assert lines[1].startswith("trigger rule invalid") and "'rule': 'r2'" in lines[1]
    assert "command" in lines[1] or "JSON" in lines[1]
    assert caplog.records[1].levelno == logging.WARNING
    assert lines[2].startswith("trigger rule removed") and "'rule': 'r1'" in lines[2]
    assert lines[3].startswith("trigger rules truncated")
