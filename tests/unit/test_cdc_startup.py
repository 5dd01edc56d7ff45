import pytest

from connectors.source.exceptions import SlotLost
from connectors.source.offsets import ConnectorOffsets
from connectors.source.startup import plan_start


def _offsets(state, slot="s"):
    return ConnectorOffsets("c", slot, state, consistent_point=100, last_commit_lsn=200)


def test_first_start_snapshots_by_creating_the_slot():
    plan = plan_start("initial", None, "s", {"s": False})
    assert (plan.kind, plan.slot) == ("fresh_snapshot", "s")


def test_first_start_without_snapshot_modes():
    assert plan_start("never", None, "s", {"s": False}).kind == "fresh_stream"
    assert plan_start("never", None, "s", {"s": False}).record_state == "skipped"
    assert plan_start("no_data", None, "s", {"s": False}).record_state == "done"
    assert plan_start("never", None, "s", {"s": True}).kind == "resume"


def test_a_slot_without_offsets_is_handed_over_not_recreated():
    # crash between CREATE_REPLICATION_SLOT and the first offsets write
    plan = plan_start("initial", None, "s", {"s": True})
    assert (plan.kind, plan.slot) == ("handover", "s")


def test_restart_after_done_resumes_and_never_snapshots_again():
    for mode in ("initial", "when_needed", "never", "no_data"):
        plan = plan_start(mode, _offsets("done", "s_h0000abcd"), "s", {"s_h0000abcd": True})
        assert (plan.kind, plan.slot) == ("resume", "s_h0000abcd")


def test_interrupted_snapshot_is_handed_over_from_the_old_slot():
    for state in ("pending", "running"):
        plan = plan_start("initial", _offsets(state), "s", {"s": True})
        assert (plan.kind, plan.slot) == ("handover", "s")


def test_lost_slot_after_snapshot_is_an_error_with_a_fix_unless_when_needed():
    with pytest.raises(SlotLost) as caught:
        plan_start("initial", _offsets("done"), "s", {"s": False})
    assert "reset --yes" in (caught.value.hint or "")
    assert "0/C8" in caught.value.message
    plan = plan_start("when_needed", _offsets("done"), "s", {"s": False})
    assert plan.kind == "fresh_snapshot" and plan.reset_offsets and plan.warning


def test_lost_slot_during_snapshot_says_so():
    with pytest.raises(SlotLost, match="while the initial snapshot was in progress"):
        plan_start("initial", _offsets("running"), "s", {"s": False})
