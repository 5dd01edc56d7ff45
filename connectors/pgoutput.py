"""Decode PostgreSQL's `pgoutput` logical replication messages (protocol version 1).

One call, `decode_message(payload)`, turns the bytes of one XLogData payload into a
frozen dataclass. Protocol reference: PostgreSQL docs, "Logical Replication Message
Formats". Logical decoding messages ('M', `messages 'true'`, PG14+) are decoded too.

Tuple values stay in PostgreSQL's text representation: `None` is SQL NULL and
`UNCHANGED_TOAST` marks a TOASTed value the server did not send because it did not
change ('u'); `connectors.pgtypes` turns text into typed values.

This is the connector's hot path: fixed-size fields are read with precompiled
`struct.Struct.unpack_from`, strings with `bytes.index`, no per-byte loops.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from connectors.compiled import load as _load_compiled
from connectors.exceptions import DecodeError

# Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01T00:00:00Z).
PG_EPOCH_OFFSET_US: Final = 946_684_800 * 1_000_000

REPLICA_IDENTITY = {"d": "default", "n": "nothing", "f": "full", "i": "index"}


class UnchangedToast:
    """The 'u' marker: a TOASTed column whose value the server did not send."""

    _instance: UnchangedToast | None = None
    __slots__ = ()

    def __new__(cls) -> UnchangedToast:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __reduce__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final = UnchangedToast()

# Text representation; bytes only if the slot was started with `binary 'true'`.
TupleValue = str | bytes | None | UnchangedToast
TupleData = tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time_us: int  # Unix epoch microseconds
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time_us: int  # Unix epoch microseconds


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class RelationColumn:
    is_key: bool
    name: str
    type_oid: int
    type_modifier: int


@dataclass(frozen=True, slots=True)
class Relation:
    oid: int
    namespace: str  # "" stands for pg_catalog on the wire; we report it as sent
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True, slots=True)
class Type:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation_oid: int
    new: TupleData


@dataclass(frozen=True, slots=True)
class Update:
    relation_oid: int
    old: TupleData | None  # 'O': replica identity full
    key: TupleData | None  # 'K': the key changed (replica identity default/index)
    new: TupleData


@dataclass(frozen=True, slots=True)
class Delete:
    relation_oid: int
    old: TupleData | None
    key: TupleData | None


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class Message:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


PgOutputMessage = (
    Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | Message
)

_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_Q = struct.Struct("!Q")
_I = struct.Struct("!I")
_FAST = _load_compiled()  # the compiled tuple decoder (connectors/_speedups.c) or None
_H = struct.Struct("!H")
_REL_HEAD = struct.Struct("!I")
_COLUMN_TAIL = struct.Struct("!Ii")
_TRUNCATE_HEAD = struct.Struct("!IB")
_MESSAGE_HEAD = struct.Struct("!BQ")
_TRUNCATE_CASCADE = 1
_TRUNCATE_RESTART_IDENTITY = 2


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\x00", pos)
    return buf[pos:end].decode("utf-8", "surrogateescape"), end + 1


def _tuple(buf: bytes, pos: int) -> tuple[TupleData, int]:
    if _FAST is not None:  # the compiled decoder; None: malformed, decoded below to say why
        done: tuple[TupleData, int] | None = _FAST.pg_tuple(buf, pos, UNCHANGED_TOAST)
        if done is not None:
            return done
    (count,) = _H.unpack_from(buf, pos)
    pos += 2
    values: list[TupleValue] = []
    append = values.append
    unpack_len = _I.unpack_from
    for _ in range(count):
        kind = buf[pos]
        pos += 1
        if kind == 0x74:  # 't' text
            (length,) = unpack_len(buf, pos)
            pos += 4
            append(buf[pos : pos + length].decode("utf-8", "surrogateescape"))
            pos += length
        elif kind == 0x6E:  # 'n' null
            append(None)
        elif kind == 0x75:  # 'u' unchanged TOAST
            append(UNCHANGED_TOAST)
        elif kind == 0x62:  # 'b' binary (only with `binary 'true'`)
            (length,) = unpack_len(buf, pos)
            pos += 4
            append(bytes(buf[pos : pos + length]))
            pos += length
        else:
            raise DecodeError(
                f"pgoutput tuple column kind byte {kind!r} ({chr(kind)!r}) is unknown",
                hint="only 't', 'n', 'u', 'b' exist in protocol v1/v2; check proto_version",
            )
    if pos > len(buf):
        raise DecodeError("pgoutput tuple data is truncated", hint="the payload is incomplete")
    return tuple(values), pos


def _begin(buf: bytes) -> Begin:
    final_lsn, commit_time, xid = _BEGIN.unpack_from(buf, 1)
    return Begin(final_lsn, commit_time + PG_EPOCH_OFFSET_US, xid)


def _commit(buf: bytes) -> Commit:
    flags, commit_lsn, end_lsn, commit_time = _COMMIT.unpack_from(buf, 1)
    return Commit(flags, commit_lsn, end_lsn, commit_time + PG_EPOCH_OFFSET_US)


def _origin(buf: bytes) -> Origin:
    (lsn,) = _Q.unpack_from(buf, 1)
    name, _ = _cstring(buf, 9)
    return Origin(lsn, name)


def _relation(buf: bytes) -> Relation:
    (oid,) = _REL_HEAD.unpack_from(buf, 1)
    namespace, pos = _cstring(buf, 5)
    name, pos = _cstring(buf, pos)
    identity = chr(buf[pos])
    (count,) = _H.unpack_from(buf, pos + 1)
    pos += 3
    columns = []
    for _ in range(count):
        flags = buf[pos]
        column_name, pos = _cstring(buf, pos + 1)
        type_oid, type_modifier = _COLUMN_TAIL.unpack_from(buf, pos)
        pos += 8
        columns.append(RelationColumn(bool(flags & 1), column_name, type_oid, type_modifier))
    return Relation(oid, namespace, name, identity, tuple(columns))


def _type(buf: bytes) -> Type:
    (oid,) = _I.unpack_from(buf, 1)
    namespace, pos = _cstring(buf, 5)
    name, _ = _cstring(buf, pos)
    return Type(oid, namespace, name)


def _insert(buf: bytes) -> Insert:
    (oid,) = _I.unpack_from(buf, 1)
    if buf[5] != 0x4E:  # 'N'
        raise DecodeError(f"pgoutput Insert expected 'N' tuple marker, got {buf[5]!r}")
    new, _ = _tuple(buf, 6)
    return Insert(oid, new)


def _update(buf: bytes) -> Update:
    (oid,) = _I.unpack_from(buf, 1)
    old = key = None
    marker, pos = buf[5], 6
    if marker == 0x4B:  # 'K'
        key, pos = _tuple(buf, pos)
        marker, pos = buf[pos], pos + 1
    elif marker == 0x4F:  # 'O'
        old, pos = _tuple(buf, pos)
        marker, pos = buf[pos], pos + 1
    if marker != 0x4E:
        raise DecodeError(f"pgoutput Update expected 'N' tuple marker, got {marker!r}")
    new, _ = _tuple(buf, pos)
    return Update(oid, old, key, new)


def _delete(buf: bytes) -> Delete:
    (oid,) = _I.unpack_from(buf, 1)
    marker = buf[5]
    data, _ = _tuple(buf, 6)
    if marker == 0x4B:
        return Delete(oid, None, data)
    if marker == 0x4F:
        return Delete(oid, data, None)
    raise DecodeError(f"pgoutput Delete expected 'K' or 'O' tuple marker, got {marker!r}")


def _truncate(buf: bytes) -> Truncate:
    count, options = _TRUNCATE_HEAD.unpack_from(buf, 1)
    oids = struct.unpack_from(f"!{count}I", buf, 6)
    return Truncate(
        oids, bool(options & _TRUNCATE_CASCADE), bool(options & _TRUNCATE_RESTART_IDENTITY)
    )


def _message(buf: bytes) -> Message:
    flags, lsn = _MESSAGE_HEAD.unpack_from(buf, 1)
    prefix, pos = _cstring(buf, 10)
    (length,) = _I.unpack_from(buf, pos)
    pos += 4
    content = bytes(buf[pos : pos + length])
    if len(content) != length:
        raise DecodeError("pgoutput Message content is truncated", hint="the payload is incomplete")
    return Message(bool(flags & 1), lsn, prefix, content)


_DECODERS: dict[int, Callable[[bytes], PgOutputMessage]] = {
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _message,
}


def decode_message(payload: bytes | bytearray | memoryview) -> PgOutputMessage:
    """Decode one pgoutput message; `DecodeError` names the byte when it is unknown."""
    buf = payload if isinstance(payload, bytes) else bytes(payload)
    if not buf:
        raise DecodeError("pgoutput message is empty", hint="the replication payload had no bytes")
    decoder = _DECODERS.get(buf[0])
    if decoder is None:
        byte = buf[0]
        raise DecodeError(
            f"pgoutput message type byte {byte!r} ({chr(byte)!r}) is unknown",
            hint="start the slot with proto_version '1' (streaming and two-phase "
            "messages of later versions are not supported)",
        )
    try:
        return decoder(buf)
    except (struct.error, IndexError, ValueError) as exc:
        raise DecodeError(
            f"pgoutput {chr(buf[0])!r} message is malformed or truncated: {exc}",
            hint="the payload is incomplete or not pgoutput",
        ) from exc


def lsn_to_str(lsn: int) -> str:
    """`0/16B3748` form, as PostgreSQL prints LSNs."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def str_to_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
