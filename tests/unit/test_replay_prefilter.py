"""The scan's pre-filter (value fields the filter names, decoded alone) never drops a
record the full test keeps, and drops what the full test drops."""

from __future__ import annotations

from chain_corpus import COMMIT_MS, encoded_corpus

from replay.decode import EnvelopeDecoder
from replay.fastscan import _prefilter
from replay.filterexpr import compile_filter
from replay.record import ReplayRecord
from replay.selection import Selection, matches

FILTERS = [
    'after.status == "completed" and op in ("c", "u")',
    'source.table == "runs" or after.kind == "temperature"',
    "not (before.status == \"running\")",
    'topic == "lab.public.runs" and offset > 30',
    'after.quantity < 1 or after.celsius > 8',
    "ts_ms > 0",
]


def _records() -> tuple[EnvelopeDecoder, list[ReplayRecord]]:
    registry, encoded = encoded_corpus()
    records = [ReplayRecord(topic, 0, offset, COMMIT_MS, key, value, [])
               for offset, (topic, key, value) in enumerate(encoded)]
    corrupt = ReplayRecord("lab.public.runs", 0, 999, COMMIT_MS, None,
                           encoded[30][2][:40], [])  # type: ignore[index]
    return EnvelopeDecoder(registry), [*records, corrupt]


def test_the_prefilter_agrees_with_the_full_test() -> None:
    decoder, records = _records()
    dropped = 0
    for text in FILTERS:
        selection = Selection(topics=("lab.public.runs",), filter_text=text)
        prefilter = _prefilter(selection, decoder)
        assert prefilter is not None
        for raw in records:
            record = ReplayRecord(raw.topic, raw.partition, raw.offset, raw.timestamp,
                                  raw.key_bytes, raw.value_bytes, [])
            kept_early = prefilter(record)
            kept = matches(record.decode(decoder), selection)
            assert kept_early or not kept, (text, record.coordinates)
            assert kept_early == kept or record.decode_error is not None, text
            dropped += not kept_early
    assert dropped > 0


def test_filter_names_and_when_there_is_no_prefilter() -> None:
    assert compile_filter('after.kind == "hplc" and op == "u" or ts_ms > 1').names == {
        "after", "op", "ts_ms"}
    decoder, _ = _records()
    assert _prefilter(Selection(topics=("t",), filter_text='key.id == "run-1"'), decoder) is None
    assert _prefilter(Selection(topics=("t",)), decoder) is None


def test_still_planned_counts_what_the_unfinished_plans_hold() -> None:
    from replay.fastscan import still_planned
    from replay.selection import PartitionPlan

    plans = {("t", 0): PartitionPlan("t", 0, 10, 20), ("t", 1): PartitionPlan("t", 1, 0, 5)}
    assert still_planned(plans, {}) == 15
    assert still_planned(plans, {("t", 0): 14}) == 5 + 5  # read up to 14: 15..19 left
    assert still_planned(plans, {("t", 0): 3}) == 15  # a position before the plan's start
    assert still_planned({}, {}) == 0


def test_bad_text_in_a_field_the_filter_does_not_name_is_still_reported() -> None:
    # the projection skips `before` but still checks its text as UTF-8 (both readers),
    # so the record is not dropped by the pre-filter: the full decode lists it undecodable
    import pytest

    from streams.fixtures import LabChanges, MemoryRegistry

    registry = MemoryRegistry()
    row = {"id": "run-1", "experiment_id": "e", "instrument_id": "i", "status": "completed"}
    topic, key, value = LabChanges(registry).encode(
        "runs", "u", row, {**row, "status": "running", "error": "ZZZZ"}, lsn=7)
    assert value is not None and value.count(b"ZZZZ") == 1
    spoiled = value.replace(b"ZZZZ", b"\xff\xfe\xff\xfe")
    selection = Selection(topics=(topic,), filter_text='after.status == "completed"')
    for speedups in ("1", "0"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LABSTREAM_CDC_SPEEDUPS", speedups)
            decoder = EnvelopeDecoder(registry)
        assert (decoder.avro._module is not None) == (speedups == "1")
        prefilter = _prefilter(selection, decoder)
        assert prefilter is not None
        record = ReplayRecord(topic, 0, 1, COMMIT_MS, key, spoiled, [])
        assert prefilter(record)  # not dropped ...
        assert matches(record.decode(decoder), selection)
        assert record.decode_error is not None and "UnicodeDecodeError" in record.decode_error
        intact = ReplayRecord(topic, 0, 2, COMMIT_MS, key, value, [])
        assert prefilter(intact) and matches(intact.decode(decoder), selection)
