from __future__ import annotations

from streams.codec import header_tuples
from streams.deadletter import (
    ERROR_HEADER,
    OFFSET_HEADER,
    PARTITION_HEADER,
    TOPIC_HEADER,
    dead_letter,
    read_dead_letter,
)
from streams.records import SourceCoordinates


def test_dead_letter_keeps_bytes_and_headers_and_adds_error_and_coordinates() -> None:
    original = (("traceparent", b"00-aa-bb-01"), ("x-custom", b"\xff"))
    letter = dead_letter(ValueError("bad magic"), key=b"\x00k", value=b"\x01junk",
                         headers=original, coordinates=SourceCoordinates("lab.public.runs", 3, 17))
    assert letter.key == b"\x00k" and letter.value == b"\x01junk"
    names = dict(letter.headers)
    assert names[ERROR_HEADER] == b"ValueError: bad magic"
    assert (names[TOPIC_HEADER], names[PARTITION_HEADER], names[OFFSET_HEADER]) == (
        b"lab.public.runs", b"3", b"17")
    assert letter.headers[-2:] == original
    error, coordinates = read_dead_letter(letter.headers)
    assert error == "ValueError: bad magic"
    assert coordinates == SourceCoordinates("lab.public.runs", 3, 17)


def test_dead_lettering_a_dead_letter_replaces_our_headers_instead_of_duplicating() -> None:
    first = dead_letter("one", key=None, value=b"v", headers=(),
                        coordinates=SourceCoordinates("a", 0, 1))
    second = dead_letter("two", key=None, value=b"v", headers=first.headers,
                         coordinates=SourceCoordinates("a.dlq", 0, 5))
    assert [name for name, _ in second.headers].count(ERROR_HEADER) == 1
    assert read_dead_letter(second.headers)[0] == "two"


def test_error_text_is_bounded() -> None:
    letter = dead_letter("x" * 10_000, key=None, value=None, headers=(),
                         coordinates=SourceCoordinates("t", 0, 0))
    assert len(dict(letter.headers)[ERROR_HEADER]) == 4096


def test_header_tuples_accepts_lists_mappings_and_drops_none() -> None:
    assert header_tuples([("a", b"1"), ("b", None), ("c", "x")]) == (("a", b"1"), ("c", b"x"))
    assert header_tuples({"a": b"1"}) == (("a", b"1"),)
    assert header_tuples(None) == ()
