"""The scan loop's shortcuts (replay/fastscan.py, replay/record.py) give what the long
way gives: the replay-copy header check, records built from librdkafka messages, and
framed Avro decoded straight by the reader; and the collector's threshold a scan raises
is put back however the scan ends."""

from __future__ import annotations

import gc
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from chain_corpus import COMMIT_MS, encoded_corpus

from replay.decode import EnvelopeDecoder
from replay.fastscan import (
    SCAN_GC_THRESHOLD,
    _record,
    _ReplayCopyCheck,
    _young_collections_spaced,
)
from replay.record import ReplayRecord
from replay.selection import REPLAY_ID_HEADER

NAMES = ["traceparent", REPLAY_ID_HEADER, REPLAY_ID_HEADER.upper(), "Labstream-Replay-Id",
         "labstream-replay-of", "labstream-replay-idx", "", "LABSTREAM-REPLAY-İD",
         "x" * 300, "tracestate"]


def test_the_replay_copy_check_is_the_header_rule_of_a_record() -> None:
    check = _ReplayCopyCheck()
    for _ in range(2):  # the second time from what it kept
        for name in NAMES:
            record = ReplayRecord("t", 0, 0, 0, None, None, [(name, b"v")])
            assert check([(name, b"v")]) == (record.header(REPLAY_ID_HEADER) is not None), name
    assert check([("traceparent", b"x"), ("LABSTREAM-replay-id", b"r")])
    assert not check([("traceparent", b"x"), ("tracestate", b"y")])


def test_the_replay_copy_check_starts_over_past_its_limit() -> None:
    check = _ReplayCopyCheck()
    for i in range(_ReplayCopyCheck.LIMIT * 2 + 3):
        assert not check([(f"header-{i}", b"")])
    assert check([(REPLAY_ID_HEADER.title(), b"")])
    assert len(check._known) <= _ReplayCopyCheck.LIMIT


class _Message:
    """What `_record` asks a confluent-kafka `Message` for."""

    def __init__(self, key: bytes | None, value: bytes | None) -> None:
        self._key, self._value = key, value

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_123)


def test_records_from_messages_are_what_the_keyword_constructor_makes() -> None:
    message = _Message(b"k", b"v")
    cases: list[tuple[Any, list[tuple[str, bytes]]]] = [
        (None, []),
        ([], []),
        ([("traceparent", b"00-ab")], [("traceparent", b"00-ab")]),
        ([("a", None), ("b", b"2")], [("a", b""), ("b", b"2")]),  # no value: b""
    ]
    for headers, expected in cases:
        made = _record(message, ("lab.public.runs", 3), 42, headers)
        assert made == ReplayRecord(topic="lab.public.runs", partition=3, offset=42,
                                    timestamp=1_700_000_000_123, key_bytes=b"k",
                                    value_bytes=b"v", headers=expected)


class _LongWay:
    """The decoder without `avro_decode`: every decode through `decode(...)`."""

    def __init__(self, decoder: EnvelopeDecoder) -> None:
        self._decoder = decoder

    def decode(self, topic: str, data: bytes, *, is_key: bool) -> Any:
        return self._decoder.decode(topic, data, is_key=is_key)


def test_framed_avro_straight_to_the_reader_decodes_as_the_decoder_does() -> None:
    registry, encoded = encoded_corpus()
    decoder = EnvelopeDecoder(registry)
    raws = [(topic, key, value) for topic, key, value in encoded]
    key, value = encoded[3][1], encoded[3][2]
    assert key is not None and value is not None
    raws += [
        ("lab.public.runs", key, value[:40]),  # value cut short: key kept, error reported
        ("lab.public.runs", b"\x00\xff\xff\xff\xfe", value),  # unknown schema id
        ("lab.public.runs", b"run-7", None),  # text key, tombstone
        ("lab.public.runs", None, b'{"payload": {"op": "c"}}'),  # JSON value
        ("lab.public.runs", None, b"\x01not avro"),
    ]
    decoded = []
    for offset, (topic, key_bytes, value_bytes) in enumerate(raws):
        fast = ReplayRecord(topic, 0, offset, COMMIT_MS, key_bytes, value_bytes, [])
        slow = ReplayRecord(topic, 0, offset, COMMIT_MS, key_bytes, value_bytes, [])
        fast.decode(decoder)
        slow.decode(_LongWay(EnvelopeDecoder(registry)))
        assert (fast.key, fast.value, fast.decode_error) == \
            (slow.key, slow.value, slow.decode_error), offset
        decoded.append(fast)
    cut_short = decoded[len(encoded)]
    assert cut_short.key is not None and cut_short.value is None and cut_short.decode_error
    assert decoded[len(encoded) + 1].decode_error  # unknown schema id: reported, not raised
    assert decoded[len(encoded) + 3].value is not None  # JSON: not the Avro path


@pytest.fixture
def default_threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_young_collections_are_spaced_during_a_scan_and_put_back(
        default_threshold: tuple[int, int, int]) -> None:
    with _young_collections_spaced():
        assert gc.get_threshold() == (SCAN_GC_THRESHOLD, 10, 10)
        assert gc.isenabled()  # spaced out, not switched off
    assert gc.get_threshold() == default_threshold


def test_nested_and_interleaved_scans_leave_the_threshold_as_it_was(
        default_threshold: tuple[int, int, int]) -> None:
    with _young_collections_spaced(), _young_collections_spaced():
        assert gc.get_threshold()[0] == SCAN_GC_THRESHOLD
    assert gc.get_threshold() == default_threshold
    first, second = _young_collections_spaced(), _young_collections_spaced()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start ends first: puts 700 back
    assert gc.get_threshold() == default_threshold
    second.__exit__(None, None, None)  # it raised nothing, so it puts nothing back
    assert gc.get_threshold() == default_threshold


def test_a_threshold_set_by_someone_else_is_kept(
        default_threshold: tuple[int, int, int]) -> None:
    gc.set_threshold(SCAN_GC_THRESHOLD * 2, 10, 10)
    with _young_collections_spaced():
        assert gc.get_threshold()[0] == SCAN_GC_THRESHOLD * 2  # higher already: untouched
    assert gc.get_threshold()[0] == SCAN_GC_THRESHOLD * 2
    gc.set_threshold(*default_threshold)
    with _young_collections_spaced():
        gc.set_threshold(1234, 10, 10)  # changed meanwhile: not overwritten at the end
    assert gc.get_threshold() == (1234, 10, 10)


def test_a_scan_left_unfinished_puts_the_threshold_back(
        default_threshold: tuple[int, int, int]) -> None:
    def records() -> Generator[int, None, None]:
        with _young_collections_spaced():
            yield from range(10)

    scan = records()
    assert next(scan) == 0 and gc.get_threshold()[0] == SCAN_GC_THRESHOLD
    scan.close()  # what `del scan` or a break out of a for loop does
    assert gc.get_threshold() == default_threshold
