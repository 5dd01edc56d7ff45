"""Confluent-framed Avro -> Python values, with a reader generated per writer schema.

`fastavro.schemaless_reader` walks the parsed schema (dicts) for every datum: on this
machine a Debezium `runs` envelope (≈ 45 values, 530 bytes) took ≈ 30 µs, the largest
single cost of the worker's chain and of a replay scan (docs/BENCHMARKS.md, "Pure
chain"). `compile_reader(schema)` instead generates the Python source of one function
for the schema, with every field's read inlined (varint fast path for one-byte
lengths, dict built in one literal), and `exec`s it once per schema id.

The result is what `fastavro.schemaless_reader` returns for the same bytes, value for
value (tests/unit/test_streams_avrodecode.py compares both over every lab table): the
same dicts, `Decimal`s built with fastavro's own arithmetic, `bytes`, booleans. A
schema with a feature the generator does not cover (recursive types, logical types
other than `decimal`) is read with fastavro, so nothing is ever rejected for speed.

Faster still, where built: `compile_plan(schema)` makes a *plan* (nested tuples) by
the same rules, and `streams/_avrodecode.c` walks it in C (`plan_reader`): the same
values at a sixth of the generated reader's CPU (1.6 vs 10.2 µs for a `runs`
envelope; docs/BENCHMARKS.md, "Issue 15 item 5, session 3").
The generated Python reader stays the fallback (C module not built, or
`LABSTREAM_CDC_SPEEDUPS=0`, which turns every compiled path off) and the reference
the C reader is tested against.

`FastAvroDeserializer` is a drop-in for `connectors.serde.AvroDeserializer`
(`decode(data)`, `schema_id(data)`, same `SerializationError`s); `decode_fields`
reads only the top-level fields asked for and skips the others (a scan filtering on
`op` and `after` need not build `before` and `source`).
"""

from __future__ import annotations

import decimal
import io
import json
import re
import struct
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

import fastavro

from connectors.compiled import load
from connectors.registry.base import SchemaRegistry
from connectors.serde import SerializationError

Reader = Callable[[bytes, int], tuple[Any, int]]
_HEADER = struct.Struct(">bI")
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class Unsupported(ValueError):
    """A schema feature the generator does not cover (the caller falls back to fastavro)."""


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """Zigzag varint at `pos` (any length) -> (value, next position).

    Unrolled: a timestamp in nanoseconds is 9 bytes, and a loop with a shift counter
    measured 1.6 µs a call against 1.3 µs for this.
    """
    b = data[pos]
    r = b & 0x7F
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 1
    b = data[pos + 1]
    r |= (b & 0x7F) << 7
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 2
    b = data[pos + 2]
    r |= (b & 0x7F) << 14
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 3
    b = data[pos + 3]
    r |= (b & 0x7F) << 21
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 4
    b = data[pos + 4]
    r |= (b & 0x7F) << 28
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 5
    b = data[pos + 5]
    r |= (b & 0x7F) << 35
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 6
    b = data[pos + 6]
    r |= (b & 0x7F) << 42
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 7
    b = data[pos + 7]
    r |= (b & 0x7F) << 49
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 8
    b = data[pos + 8]
    r |= (b & 0x7F) << 56
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 9
    b = data[pos + 9]
    r |= (b & 0x7F) << 63
    if b < 0x80:
        return (r >> 1) ^ -(r & 1), pos + 10
    raise ValueError("varint longer than 10 bytes")


_VARINT_END = re.compile(rb"[\x80-\xff]{0,9}[\x00-\x7f]", re.DOTALL)


def _decimal(raw: bytes, precision: int, scale: int) -> decimal.Decimal:
    # fastavro's read_decimal, operation for operation, so the Decimals are identical
    context = decimal.Context(prec=precision)
    return context.create_decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale, context)


_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")
_RUNTIME = {"_long": _long, "_varint_end": _VARINT_END.match, "_decimal": _decimal,
            "_float": _FLOAT.unpack_from, "_double": _DOUBLE.unpack_from}


class _Generator:
    """Emits the body of `read(data, pos)` for one schema."""

    def __init__(self, names: dict[str, Any]) -> None:
        self.names = names  # full name -> schema (named types seen so far)
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._counter = 0
        self._expanding: set[str] = set()
        self.skipping = False  # inside a field nobody asked for: advance, build nothing

    def var(self, stem: str = "v") -> str:
        self._counter += 1
        return f"{stem}{self._counter}"

    def const(self, value: Any) -> str:
        name = self.var("K")
        self.constants[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def length(self, indent: int, target: str) -> None:
        # a length is a zigzag varint: one even byte below 128 (0..63) is the common case
        self.emit(indent, "b = data[pos]")
        self.emit(indent, "if not b & 0x81:")
        self.emit(indent + 1, f"{target} = b >> 1")
        self.emit(indent + 1, "pos += 1")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"{target}, pos = _long(data, pos)")
        self.emit(indent + 1, f"if {target} < 0: raise ValueError('negative length')")

    def read(self, schema: Any, namespace: str, indent: int, target: str) -> None:
        """Lines that read one datum of `schema` into the local `target`."""
        if isinstance(schema, list):
            return self.union(schema, namespace, indent, target)
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return self.primitive(schema, None, indent, target)
            return self.named(schema, namespace, indent, target)
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        kind, logical = _kind_and_logical(schema)
        if kind in _PRIMITIVES or kind == "fixed":
            if kind == "fixed":
                self.register(schema, namespace)
                self.emit(indent, f"{target} = data[pos:pos + {int(schema['size'])}]")
                self.emit(indent, f"pos += {int(schema['size'])}")
                return self.decimal(schema, logical, indent, target)
            return self.primitive(kind, schema if logical else None, indent, target)
        if kind == "record" or kind == "error":
            return self.record(schema, namespace, indent, target)
        if kind == "enum":
            self.register(schema, namespace)
            return self.enum(schema, indent, target)
        if kind == "array":
            return self.array(schema, namespace, indent, target)
        if kind == "map":
            return self.map(schema, namespace, indent, target)
        if isinstance(kind, dict | list) or kind in self.names or (
                isinstance(kind, str) and _full(kind, namespace) in self.names):
            return self.read(kind, namespace, indent, target)
        raise Unsupported(f"type {kind!r}")

    def primitive(self, kind: str, decimal_schema: Any, indent: int, target: str) -> None:
        if kind == "null":
            self.emit(indent, f"{target} = None")
        elif kind == "boolean":
            self.emit(indent, f"{target} = data[pos] != 0")
            self.emit(indent, "pos += 1")
        elif kind in ("int", "long") and self.skipping:
            self.emit(indent, "pos = _varint_end(data, pos).end()")
        elif kind in ("int", "long"):
            self.emit(indent, "b = data[pos]")
            self.emit(indent, "if b < 128:")
            self.emit(indent + 1, f"{target} = (b >> 1) ^ -(b & 1)")
            self.emit(indent + 1, "pos += 1")
            self.emit(indent, "else:")
            self.emit(indent + 1, f"{target}, pos = _long(data, pos)")
        elif kind == "float":
            self.emit(indent, f"{target} = _float(data, pos)[0]")
            self.emit(indent, "pos += 4")
        elif kind == "double":
            self.emit(indent, f"{target} = _double(data, pos)[0]")
            self.emit(indent, "pos += 8")
        else:  # bytes, string
            # no bounds check here: a slice past the end is short, and then the final
            # `pos > end` check of the reader raises
            self.length(indent, "n")
            cast = ".decode()" if kind == "string" else ""
            self.emit(indent, f"{target} = data[pos:pos + n]{cast}")
            self.emit(indent, "pos += n")
            if decimal_schema is not None:
                self.decimal(decimal_schema, "decimal", indent, target)

    def decimal(self, schema: Any, logical: Any, indent: int, target: str) -> None:
        if logical != "decimal" or self.skipping:
            return
        precision = int(schema["precision"])
        scale = int(schema.get("scale", 0))
        self.emit(indent, f"{target} = _decimal({target}, {precision}, {scale})")

    def union(self, branches: list[Any], namespace: str, indent: int, target: str) -> None:
        # the branch index is one zigzag byte (0 -> 0x00, 1 -> 0x02, ...) below 64 branches
        index = self.var("u")
        if len(branches) >= 64:
            raise Unsupported("union of 64 branches or more")
        self.emit(indent, f"{index} = data[pos]")
        self.emit(indent, "pos += 1")
        for number, branch in enumerate(branches):
            self.emit(indent, f"{'if' if number == 0 else 'elif'} {index} == {2 * number}:")
            self.read(branch, namespace, indent + 1, target)
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise ValueError('union branch byte ' + str({index}))")

    def named(self, name: str, namespace: str, indent: int, target: str) -> None:
        full = name if name in self.names else _full(name, namespace)
        if full not in self.names:
            raise Unsupported(f"unknown named type {name!r}")
        if full in self._expanding:
            raise Unsupported(f"recursive type {full}")
        schema = self.names[full]
        self.read(schema, _namespace_of(full), indent, target)

    def register(self, schema: dict[str, Any], namespace: str) -> str:
        full = _full(str(schema["name"]), schema.get("namespace", namespace))
        self.names[full] = schema
        return full

    def record(self, schema: dict[str, Any], namespace: str, indent: int, target: str) -> None:
        full = self.register(schema, namespace)
        inner = _namespace_of(full)
        self._expanding.add(full)
        items, outer = [], self.skipping
        for field in schema["fields"]:
            local = self.var()
            self.skipping = outer or field.get(_SKIP, False)
            self.read(field["type"], inner, indent, local)
            if not self.skipping:
                items.append(f"{json.dumps(str(field['name']))}: {local}")
        self.skipping = outer
        self._expanding.discard(full)
        if not outer:
            self.emit(indent, f"{target} = {{{', '.join(items)}}}")

    def enum(self, schema: dict[str, Any], indent: int, target: str) -> None:
        symbols = self.const(tuple(schema["symbols"]))
        index = self.var("e")
        self.length(indent, index)  # an index is never negative either
        self.emit(indent, f"{target} = {symbols}[{index}]")

    def array(self, schema: dict[str, Any], namespace: str, indent: int, target: str) -> None:
        count, item = self.var("c"), self.var("i")
        self.emit(indent, f"{target} = []")
        self.emit(indent, "while True:")
        self.blocks(indent + 1, count)
        self.emit(indent + 1, f"for _ in range({count}):")
        self.read(schema["items"], namespace, indent + 2, item)
        self.emit(indent + 2, "pass" if self.skipping else f"{target}.append({item})")

    def map(self, schema: dict[str, Any], namespace: str, indent: int, target: str) -> None:
        count, key, item = self.var("c"), self.var("k"), self.var("i")
        self.emit(indent, f"{target} = {{}}")
        self.emit(indent, "while True:")
        self.blocks(indent + 1, count)
        self.emit(indent + 1, f"for _ in range({count}):")
        self.primitive("string", None, indent + 2, key)
        self.read(schema["values"], namespace, indent + 2, item)
        self.emit(indent + 2, "pass" if self.skipping else f"{target}[{key}] = {item}")

    def blocks(self, indent: int, count: str) -> None:
        # Avro blocks: a count (negative: followed by a byte size), 0 ends the sequence
        self.emit(indent, f"{count}, pos = _long(data, pos)")
        self.emit(indent, f"if {count} == 0: break")
        self.emit(indent, f"if {count} < 0:")
        self.emit(indent + 1, f"{count} = -{count}")
        self.emit(indent + 1, "_, pos = _long(data, pos)")


_FASTAVRO_LOGICAL = {"long-timestamp-millis", "long-local-timestamp-millis",
                     "long-timestamp-micros", "long-local-timestamp-micros", "int-date",
                     "string-uuid", "int-time-millis", "long-time-micros"}


def _kind_and_logical(schema: dict[str, Any]) -> tuple[Any, Any]:
    """The type and the logical type both readers honour: fastavro's logical types they
    do not cover are Unsupported, others (unknown to fastavro too) are ignored."""
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if (kind in _PRIMITIVES or kind == "fixed") and logical is not None and not (
            logical == "decimal" and kind in ("bytes", "fixed")):
        if f"{kind}-{logical}" in _FASTAVRO_LOGICAL:
            raise Unsupported(f"logical type {logical}")
        logical = None  # fastavro ignores logical types it does not know
    return kind, logical


def _full(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _namespace_of(full: str) -> str:
    return full.rpartition(".")[0]


def compile_reader(schema: Any, *, fields: Collection[str] | None = None) -> Reader:
    """`read(data, pos) -> (value, next pos)` for Avro `schema` (a parsed JSON document).

    With `fields` (top-level record only), the other fields are skipped, not built.
    Raises `Unsupported` for what the generator does not cover.
    """
    generator = _Generator({})
    if fields is not None:
        if not (isinstance(schema, dict) and schema.get("type") == "record"):
            raise Unsupported("fields= needs a record schema")
        schema = _projected(schema, set(fields))
    generator.read(schema, "", 1, "value")
    source = "\n".join(["def read(data, pos):", "    end = len(data)", *generator.lines,
                        "    if pos > end: raise EOFError('truncated')",
                        "    return value, pos"])
    scope: dict[str, Any] = {**_RUNTIME, **generator.constants}
    name = schema.get("name", "?") if isinstance(schema, dict) else schema
    # the source is made from the schema's structure only; names enter as JSON literals
    exec(compile(source, f"<avro reader {name}>", "exec"), scope)
    reader: Reader = scope["read"]
    return reader


_SKIP = "\x00skip"  # marks a field of a projected schema (not a valid Avro attribute name)


def _projected(schema: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """The record with the unwanted fields marked to be skipped."""
    # Skipping still walks the bytes (Avro has no field offsets); what it saves is
    # building the dicts and strings of the fields nobody looks at.
    return {**schema, "fields": [field if field["name"] in wanted else {**field, _SKIP: True}
                                 for field in schema["fields"]]}


# -- plans for the C reader (streams/_avrodecode.c) ------------------------------------

# node kinds: keep in step with the enum of _avrodecode.c
(_P_NULL, _P_BOOLEAN, _P_LONG, _P_FLOAT, _P_DOUBLE, _P_BYTES, _P_STRING, _P_FIXED, _P_ENUM,
 _P_RECORD, _P_ARRAY, _P_MAP, _P_UNION, _P_DECIMAL) = range(14)
_P_PRIMITIVES = {"null": _P_NULL, "boolean": _P_BOOLEAN, "int": _P_LONG, "long": _P_LONG,
                 "float": _P_FLOAT, "double": _P_DOUBLE, "bytes": _P_BYTES, "string": _P_STRING}
Plan = tuple[Any, ...]


class _Planner:
    """`_Generator`'s walk over the schema, building plan tuples instead of source."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {}
        self._expanding: set[str] = set()

    def plan(self, schema: Any, namespace: str) -> Plan:
        if isinstance(schema, list):
            return (_P_UNION, tuple(self.plan(branch, namespace) for branch in schema))
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return (_P_PRIMITIVES[schema],)
            return self.named(schema, namespace)
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        kind, logical = _kind_and_logical(schema)
        if kind in _PRIMITIVES or kind == "fixed":
            if kind == "fixed":
                self.register(schema, namespace)
                raw: Plan = (_P_FIXED, int(schema["size"]))
            else:
                raw = (_P_PRIMITIVES[kind],)
            if logical == "decimal":
                return (_P_DECIMAL, raw, _decimal, int(schema["precision"]),
                        int(schema.get("scale", 0)))
            return raw
        if kind == "record" or kind == "error":
            return self.record(schema, namespace)
        if kind == "enum":
            self.register(schema, namespace)
            return (_P_ENUM, tuple(schema["symbols"]))
        if kind == "array":
            return (_P_ARRAY, self.plan(schema["items"], namespace))
        if kind == "map":
            return (_P_MAP, self.plan(schema["values"], namespace))
        if isinstance(kind, dict | list) or kind in self.names or (
                isinstance(kind, str) and _full(kind, namespace) in self.names):
            return self.plan(kind, namespace)
        raise Unsupported(f"type {kind!r}")

    def named(self, name: str, namespace: str) -> Plan:
        full = name if name in self.names else _full(name, namespace)
        if full not in self.names:
            raise Unsupported(f"unknown named type {name!r}")
        if full in self._expanding:
            raise Unsupported(f"recursive type {full}")
        return self.plan(self.names[full], _namespace_of(full))

    def register(self, schema: dict[str, Any], namespace: str) -> str:
        full = _full(str(schema["name"]), schema.get("namespace", namespace))
        self.names[full] = schema
        return full

    def record(self, schema: dict[str, Any], namespace: str) -> Plan:
        full = self.register(schema, namespace)
        self._expanding.add(full)
        fields = tuple((str(field["name"]), self.plan(field["type"], _namespace_of(full)),
                        bool(field.get(_SKIP, False))) for field in schema["fields"])
        self._expanding.discard(full)
        return (_P_RECORD, fields)


def compile_plan(schema: Any, *, fields: Collection[str] | None = None) -> Plan:
    """The C reader's plan of `schema` (`fields`: as `compile_reader`); `Unsupported`
    exactly where `compile_reader` raises it."""
    if fields is not None:
        if not (isinstance(schema, dict) and schema.get("type") == "record"):
            raise Unsupported("fields= needs a record schema")
        schema = _projected(schema, set(fields))
    return _Planner().plan(schema, "")


def compiled_module() -> ModuleType | None:
    """`streams._avrodecode`, or None: not built, or `LABSTREAM_CDC_SPEEDUPS=0`."""
    return load("streams._avrodecode")


def plan_reader(module: ModuleType, schema: Any, *,
                fields: Collection[str] | None = None) -> Reader:
    """The C reader of `schema`; `Unsupported` where there is none (then the generated
    Python reader or fastavro reads it)."""
    plan = compile_plan(schema, fields=fields)
    try:
        reader: Reader = module.Reader(plan)
    except ValueError as exc:  # nested deeper than the C reader takes
        raise Unsupported(str(exc)) from exc
    return reader


# what a reader raises on bytes that do not match its schema (UnicodeDecodeError is a
# ValueError): reported as one SerializationError naming the schema id
_BODY_ERRORS = (EOFError, ValueError, IndexError, KeyError, AttributeError, struct.error,
                decimal.InvalidOperation)


class FastAvroDeserializer:
    """`connectors.serde.AvroDeserializer` with the C reader where it is built, else the
    generated Python readers, else fastavro (schemas neither covers)."""

    def __init__(self, registry: SchemaRegistry, *, compiled: bool = True) -> None:
        """`compiled=False`: the generated Python readers even where the C one is built."""
        self.registry = registry
        self._module = compiled_module() if compiled else None
        self._readers: dict[int, Reader] = {}
        self._projections: dict[tuple[int, frozenset[str]], Reader] = {}
        # the same readers by the 5 framing bytes (magic byte + schema id): one slice and
        # one lookup per record instead of unpacking the id (the scan's hot path)
        self._by_frame: dict[bytes, Reader] = {}
        self._by_frame_fields: dict[tuple[bytes, frozenset[str]], Reader] = {}

    def schema_id(self, data: bytes) -> int:
        if len(data) < 5 or data[0] != 0:
            raise SerializationError(
                "record is not Confluent-framed Avro (magic byte 0 + 4-byte schema id)",
                hint="was it written with the JSON serializer? check LABSTREAM_CDC_SERIALIZER",
            )
        return int(_HEADER.unpack_from(data)[1])

    def has_reader(self, data: bytes | None, fields: frozenset[str] | None = None) -> bool:
        """Whether decoding `data` (`decode`, or `decode_fields` with `fields`) needs no
        registry fetch: its reader is made already, or the bytes are not framed at all."""
        if data is None or len(data) < 5 or data[0] != 0:
            return True
        schema_id = int(_HEADER.unpack_from(data)[1])
        if fields is None:
            return schema_id in self._readers
        return (schema_id, fields) in self._projections

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            return None
        reader = self._by_frame.get(data[:5])  # only framed bytes were ever stored
        if reader is None:
            schema_id = self.schema_id(data)  # raises for bytes that are not framed
            reader = self._readers.get(schema_id)
            if reader is None:
                reader = self._readers[schema_id] = self._reader(schema_id, None)
            self._by_frame[data[:5]] = reader
        try:
            return reader(data, 5)[0]
        except _BODY_ERRORS as exc:
            raise self._body_error(data, exc) from exc

    def decode_fields(self, data: bytes, fields: frozenset[str]) -> dict[str, Any]:
        """Only the top-level `fields` of a record (the others skipped, absent)."""
        reader = self._by_frame_fields.get((data[:5], fields))
        if reader is None:
            reader = self.fields_reader(data, fields)
        try:
            value: dict[str, Any] = reader(data, 5)[0]
        except _BODY_ERRORS as exc:
            raise self._body_error(data, exc) from exc
        return value

    def fields_reader(self, data: bytes, fields: frozenset[str]) -> Reader:
        """The reader `decode_fields(data, fields)` uses, for framed `data`: it reads the
        body from position 5, `reader(data, 5) -> (value, end)`, and raises what the
        schema's reader raises (not wrapped in a SerializationError)."""
        reader = self._by_frame_fields.get((data[:5], fields))
        if reader is None:
            schema_id = self.schema_id(data)
            reader = self._projections.get((schema_id, fields))
            if reader is None:
                reader = self._projections[(schema_id, fields)] = self._reader(schema_id, fields)
            self._by_frame_fields[(data[:5], fields)] = reader
        return reader

    def _body_error(self, data: bytes, exc: Exception) -> SerializationError:
        return SerializationError(f"Avro body does not match schema id {self.schema_id(data)}: "
                                  f"{type(exc).__name__}: {exc}")

    def _reader(self, schema_id: int, fields: frozenset[str] | None) -> Reader:
        schema = json.loads(self.registry.get_schema(schema_id))
        if self._module is not None:
            try:
                return plan_reader(self._module, schema, fields=fields)
            except (Unsupported, RecursionError):
                pass
        try:
            return compile_reader(schema, fields=fields)
        except (Unsupported, SyntaxError, RecursionError):
            # SyntaxError: Python's limit of 20 nested blocks (arrays of arrays ...)
            parsed = fastavro.parse_schema(schema)

            def with_fastavro(data: bytes, pos: int) -> tuple[Any, int]:
                return fastavro.schemaless_reader(io.BytesIO(data[pos:]), parsed, None), len(data)

            return with_fastavro
