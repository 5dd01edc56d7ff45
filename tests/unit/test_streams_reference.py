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
