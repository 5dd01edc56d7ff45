"""pgoutput decoding: a test-only encoder writes every message type, the decoder reads it back."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from base.errors import PoisonRecord
from connectors.exceptions import DecodeError
from connectors.pgoutput import (
    PG_EPOCH_OFFSET_US,
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    Relation,
    RelationColumn,
    Truncate,
    Type,
    Update,
    decode_message,
    lsn_to_str,
    str_to_lsn,
)

# --- a test-only encoder following PostgreSQL's "Logical Replication Message Formats" ---


def cstr(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\x00"


def tuple_data(values: tuple) -> bytes:
    out = [struct.pack("!H", len(values))]
    for value in values:
        if value is None:
            out.append(b"n")
        elif value is UNCHANGED_TOAST:
            out.append(b"u")
        elif isinstance(value, bytes):
            out.append(b"b" + struct.pack("!I", len(value)) + value)
        else:
            raw = value.encode("utf-8", "surrogateescape")
            out.append(b"t" + struct.pack("!I", len(raw)) + raw)
    return b"".join(out)


def encode(message) -> bytes:
    if isinstance(message, Begin):
        return b"B" + struct.pack(
            "!QqI", message.final_lsn, message.commit_time_us - PG_EPOCH_OFFSET_US, message.xid
        )
    if isinstance(message, Commit):
        return b"C" + struct.pack(
            "!BQQq", message.flags, message.commit_lsn, message.end_lsn,
            message.commit_time_us - PG_EPOCH_OFFSET_US,
        )
    if isinstance(message, Origin):
        return b"O" + struct.pack("!Q", message.commit_lsn) + cstr(message.name)
    if isinstance(message, Relation):
        out = b"R" + struct.pack("!I", message.oid) + cstr(message.namespace) + cstr(message.name)
        out += message.replica_identity.encode() + struct.pack("!H", len(message.columns))
        for column in message.columns:
            out += bytes([1 if column.is_key else 0]) + cstr(column.name)
            out += struct.pack("!Ii", column.type_oid, column.type_modifier)
        return out
    if isinstance(message, Type):
        return b"Y" + struct.pack("!I", message.oid) + cstr(message.namespace) + cstr(message.name)
    if isinstance(message, Insert):
        return b"I" + struct.pack("!I", message.relation_oid) + b"N" + tuple_data(message.new)
    if isinstance(message, Update):
        out = b"U" + struct.pack("!I", message.relation_oid)
        if message.key is not None:
            out += b"K" + tuple_data(message.key)
        elif message.old is not None:
            out += b"O" + tuple_data(message.old)
        return out + b"N" + tuple_data(message.new)
    if isinstance(message, Delete):
        out = b"D" + struct.pack("!I", message.relation_oid)
        if message.key is not None:
            return out + b"K" + tuple_data(message.key)
        return out + b"O" + tuple_data(message.old)
    if isinstance(message, Truncate):
        options = (1 if message.cascade else 0) | (2 if message.restart_identity else 0)
        out = b"T" + struct.pack("!IB", len(message.relation_oids), options)
        return out + b"".join(struct.pack("!I", oid) for oid in message.relation_oids)
    if isinstance(message, Message):
        return (
            b"M" + struct.pack("!BQ", 1 if message.transactional else 0, message.lsn)
            + cstr(message.prefix) + struct.pack("!I", len(message.content)) + message.content
        )
    raise TypeError(message)


# --- strategies with odd values --------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
# Any PG timestamp (int64 us since 2000) as Unix microseconds.
commit_time = st.integers(-(2**63), 2**63 - 1).map(lambda pg: pg + PG_EPOCH_OFFSET_US)
name_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
value_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)  # NULs allowed
tuple_value = st.one_of(
    st.none(), st.just(UNCHANGED_TOAST), value_text, st.binary(max_size=30)
)
tuples = st.lists(tuple_value, max_size=12).map(tuple)

columns = st.lists(
    st.builds(RelationColumn, st.booleans(), name_text, u32, i32), max_size=10
).map(tuple)

messages = st.one_of(
    st.builds(Begin, u64, commit_time, u32),
    st.builds(Commit, st.integers(0, 255), u64, u64, commit_time),
    st.builds(Origin, u64, name_text),
    st.builds(Relation, u32, name_text, name_text, st.sampled_from("dnfi"), columns),
    st.builds(Type, u32, name_text, name_text),
    st.builds(Insert, u32, tuples),
    st.builds(Update, u32, st.none(), st.none(), tuples),
    st.builds(Update, u32, st.none(), tuples, tuples),
    st.builds(Update, u32, tuples, st.none(), tuples),
    st.builds(Delete, u32, st.none(), tuples),
    st.builds(Delete, u32, tuples, st.none()),
    st.builds(Truncate, st.lists(u32, max_size=8).map(tuple), st.booleans(), st.booleans()),
    st.builds(Message, st.booleans(), u64, name_text, st.binary(max_size=200)),
)


@given(messages)
@settings(deadline=None, max_examples=600)
def test_every_message_type_round_trips(message) -> None:
    assert decode_message(encode(message)) == message


@given(messages)
@settings(deadline=None)
def test_decoder_accepts_memoryview_and_bytearray(message) -> None:
    payload = encode(message)
    assert decode_message(memoryview(payload)) == message
    assert decode_message(bytearray(payload)) == message


@given(messages, st.data())
@settings(deadline=None)
def test_truncated_payloads_raise_decode_error_not_crash(message, data) -> None:
    payload = encode(message)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecodeError):
        decode_message(payload[:cut])


def test_unknown_message_byte_is_a_poison_record_naming_the_byte() -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(b"S\x00\x00\x00\x01")  # 'S' stream start exists only in protocol v2
    assert "'S'" in str(info.value)
    assert isinstance(info.value, PoisonRecord)


def test_empty_payload_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_message(b"")


def test_unknown_tuple_kind_is_a_decode_error() -> None:
    payload = b"I" + struct.pack("!I", 5) + b"N" + struct.pack("!H", 1) + b"x"
    with pytest.raises(DecodeError, match="'x'"):
        decode_message(payload)


def test_begin_converts_pg_epoch_to_unix_microseconds() -> None:
    # 2000-01-01T00:00:00Z is 0 on the wire and 946684800 s after the Unix epoch.
    payload = b"B" + struct.pack("!QqI", 0x16B3748, 0, 42)
    begin = decode_message(payload)
    assert begin == Begin(final_lsn=0x16B3748, commit_time_us=946_684_800_000_000, xid=42)


def test_unchanged_toast_is_a_singleton_sentinel() -> None:
    decoded = decode_message(encode(Insert(1, ("a", UNCHANGED_TOAST, None))))
    assert decoded.new[1] is UNCHANGED_TOAST
    assert repr(UNCHANGED_TOAST) == "UNCHANGED_TOAST"


@given(u64)
@settings(deadline=None)
def test_lsn_text_round_trip(lsn: int) -> None:
    assert str_to_lsn(lsn_to_str(lsn)) == lsn


def test_lsn_text_matches_postgres_format() -> None:
    assert lsn_to_str(0x16B3748) == "0/16B3748"
    assert str_to_lsn("1/0") == 2**32
