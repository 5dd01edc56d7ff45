"""The chain's records built without their dataclass `__init__` are the same objects.

`streams.records.fast_constructor` sets each slot through its descriptor (a replay dry
run builds three such objects per record); these tests hold it to the dataclass:
equal, same hash and repr, as immutable, and with every field in its place.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from streams.records import (
    ChangeEnvelope,
    ChangeRecord,
    Decision,
    SourceCoordinates,
    fast_constructor,
    make_change_record,
    make_coordinates,
)

VALUE: dict[str, Any] = {"op": "u", "before": {"id": "run-1", "status": "running"},
         "after": {"id": "run-1", "status": "completed"},
         "source": {"table": "runs", "lsn": 42, "ts_ms": 7}, "ts_ms": 9,
         "transaction": {"id": "t1"}}


def test_coordinates_are_the_dataclass_value() -> None:
    fast, slow = make_coordinates("lab.public.runs", 3, 17), SourceCoordinates("lab.public.runs",
                                                                               3, 17)
    assert type(fast) is SourceCoordinates
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert {slow: "found"}[fast] == "found"  # explain looks decisions up by origin
    assert make_coordinates("t", 3, 18) != slow


def test_envelope_from_value_is_the_dataclass_value() -> None:
    envelope = ChangeEnvelope.from_value(VALUE)
    expected = ChangeEnvelope(op="u", before=VALUE["before"], after=VALUE["after"],
                              source=VALUE["source"], ts_ms=9, transaction={"id": "t1"})
    assert type(envelope) is ChangeEnvelope and envelope == expected
    assert repr(envelope) == repr(expected)
    assert (envelope.table, envelope.lsn, envelope.committed_at_ms) == ("runs", 42, 7)
    # what the old keyword construction did with missing and non-text values
    sparse = ChangeEnvelope.from_value({"op": 1})
    assert sparse == ChangeEnvelope(op="1", before=None, after=None, source={})


def test_change_record_is_the_dataclass_value() -> None:
    envelope = ChangeEnvelope.from_value(VALUE)
    coordinates = SourceCoordinates("lab.public.runs", 0, 5)
    headers = (("traceparent", b"00-abc"),)
    fast = make_change_record(envelope, {"id": "run-1"}, coordinates, headers)
    slow = ChangeRecord(envelope, {"id": "run-1"}, coordinates, headers)
    assert type(fast) is ChangeRecord and fast == slow and repr(fast) == repr(slow)
    assert [getattr(fast, f.name) for f in dataclasses.fields(ChangeRecord)] == \
        [envelope, {"id": "run-1"}, coordinates, headers]
    assert fast.change_id == slow.change_id == 'runs:{"id":"run-1"}:42'


@pytest.mark.parametrize("made", [
    make_coordinates("t", 0, 1),
    ChangeEnvelope.from_value(VALUE),
    make_change_record(ChangeEnvelope.from_value(VALUE), {}, make_coordinates("t", 0, 1), ()),
])
def test_what_the_fast_constructors_make_stays_immutable(made: Any) -> None:
    first = dataclasses.fields(made)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, first, "changed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(made, first)
    # slotted, no __dict__: TypeError from Python 3.11's frozen slotted __setattr__ (its
    # `super(cls, self)` names the class before slots), as for the dataclass's own objects
    with pytest.raises((AttributeError, TypeError)):
        made.extra = 1


def test_fast_constructor_takes_every_field_in_order() -> None:
    make = fast_constructor(Decision)
    names = [f.name for f in dataclasses.fields(Decision)]
    values = [f"value-{i}" for i in range(len(names))]
    made = make(*values)
    assert [getattr(made, name) for name in names] == values
    with pytest.raises(TypeError):
        make(*values[:-1])  # no defaults: a missing field is an error, not a gap
