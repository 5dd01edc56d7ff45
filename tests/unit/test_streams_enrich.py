from __future__ import annotations

import asyncio

from streams_builders import EXPERIMENT, INSTRUMENT, FakeReference, change, full_reference, run_row

from streams.enrich import enrich, enrich_waiting


def test_run_is_joined_with_experiment_instrument_tenant_and_samples() -> None:
    enriched = enrich(change("runs", "u", run_row("completed"), run_row("running")),
                      full_reference())
    enrichment = enriched.enrichment
    assert enrichment.complete and enrichment.missing == ()
    assert enrichment.experiment["kind"] == "hplc"
    assert enrichment.instrument["name"] == "HPLC #1"
    assert enrichment.tenant["name"] == "Acme Labs"
    assert [sample["id"] for sample in enrichment.samples] == ["s-1"]
    assert enriched.tenant_id == "acme" and enriched.experiment_id == "exp-1"


def test_late_instrument_marks_enrichment_incomplete_and_names_it() -> None:
    reference = full_reference()
    del reference.rows["instruments"]["hplc-01"]
    enrichment = enrich(change("runs", "c", run_row("queued")), reference).enrichment
    assert enrichment.complete is False
    assert enrichment.missing == ("instrument:hplc-01",)
    assert enrichment.instrument is None and enrichment.experiment is not None


def test_missing_experiment_also_leaves_tenant_unknown() -> None:
    reference = FakeReference({"instruments": {"hplc-01": INSTRUMENT}})
    enriched = enrich(change("runs", "c", run_row("queued")), reference)
    assert enriched.enrichment.missing == ("experiment:exp-1",)
    assert enriched.tenant_id is None


def test_experiment_needs_only_its_tenant() -> None:
    enriched = enrich(change("experiments", "c", dict(EXPERIMENT, status="submitted")),
                      FakeReference())
    assert enriched.enrichment.missing == ("tenant:acme",)
    assert enriched.tenant_id == "acme"  # from the row itself


def test_reading_without_instrument_id_is_complete() -> None:
    row = {"id": 5, "sensor_id": "x", "instrument_id": None, "kind": "door", "door_open": True}
    assert enrich(change("sensor_readings", "c", row), FakeReference()).enrichment.complete


def test_tables_without_enrichment_are_complete() -> None:
    assert enrich(change("jobs", "c", {"id": "j"}), FakeReference()).enrichment.complete


def test_wait_returns_complete_once_late_reference_arrives() -> None:
    reference = full_reference()
    del reference.rows["instruments"]["hplc-01"]

    async def scenario() -> bool:
        async def arrive_later() -> None:
            await asyncio.sleep(0.05)
            reference.rows["instruments"]["hplc-01"] = INSTRUMENT

        task = asyncio.create_task(arrive_later())
        enriched = await enrich_waiting(change("runs", "c", run_row("queued")), reference,
                                        timeout_s=2.0, poll_s=0.01)
        await task
        return enriched.enrichment.complete

    assert asyncio.run(scenario()) is True


def test_wait_gives_up_after_timeout_with_incomplete_enrichment() -> None:
    reference = FakeReference({"experiments": {"exp-1": EXPERIMENT}})
    enriched = asyncio.run(enrich_waiting(change("runs", "c", run_row("queued")), reference,
                                          timeout_s=0.05, poll_s=0.01))
    assert not enriched.enrichment.complete
    assert "instrument:hplc-01" in enriched.enrichment.missing


def test_a_row_waited_for_in_vain_is_not_waited_for_again() -> None:
    from streams.enrich import GaveUp

    reference = FakeReference({"experiments": {"exp-1": EXPERIMENT}})
    gave_up = GaveUp(forget_after_s=60)
    now = [0.0]

    def clock() -> float:
        return now[0]

    async def scenario() -> list[int]:
        sleeps = []
        original = asyncio.sleep

        async def counting_sleep(seconds: float) -> None:
            sleeps.append(1)
            now[0] += seconds
            await original(0)

        asyncio.sleep = counting_sleep  # type: ignore[assignment]
        try:
            counts = []
            for _ in range(2):
                sleeps.clear()
                await enrich_waiting(change("runs", "c", run_row("queued")), reference,
                                     timeout_s=1.0, poll_s=0.1, clock=clock, gave_up=gave_up)
                counts.append(len(sleeps))
            now[0] += 61  # a minute later it is waited for again
            sleeps.clear()
            await enrich_waiting(change("runs", "c", run_row("queued")), reference,
                                 timeout_s=1.0, poll_s=0.1, clock=clock, gave_up=gave_up)
            counts.append(len(sleeps))
            return counts
        finally:
            asyncio.sleep = original  # type: ignore[assignment]

    first, second, later = asyncio.run(scenario())
    assert first >= 9 and second == 0 and later >= 9
