"""Plans for the compiled record writers of `connectors/_speedups.c`.

The C module writes a record by walking a *plan* (nested tuples) compiled here once
per schema from the same schema, and by the same rules, as the pure-Python writers
(`avrowriter.compile_writer`, `jsonwriter.compile_encoder`). It handles only exact
built-in value types and returns None for anything else, so the serializers then run
the Python writer on that record: output is byte-identical either way
(tests/unit/test_codec_speedups.py). Why C at all: after the Python writers were
tuned, encoding was still ~30 % of the connector's CPU per row (docs/BENCHMARKS.md,
"CDC speed (issue 13 item 6)").

`LABSTREAM_CDC_SPEEDUPS=0` turns the compiled writers off (connectors/compiled.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors import connectjson, jsonwriter, pgtext
from connectors.avrowriter import _PRIMITIVES, UnsupportedSchema
from connectors.compiled import load

Plan = tuple[Any, ...]
__all__ = ["Plan", "avro_plan", "json_plan", "load"]

# node kinds: keep in step with the enums of _speedups.c
A_NULL, A_BOOLEAN, A_INT, A_LONG, A_FLOAT, A_DOUBLE, A_BYTES, A_STRING = range(8)
A_DECIMAL, A_RECORD, A_ARRAY, A_UNION = range(8, 12)
J_PLAIN, J_STRING, J_INTEGER, J_BOOLEAN, J_DOUBLE, J_PYFLOAT, J_BYTES, J_STRUCT, J_ARRAY = \
    range(9)

_AVRO_PRIMITIVES = {"null": A_NULL, "boolean": A_BOOLEAN, "int": A_INT, "long": A_LONG,
                    "float": A_FLOAT, "double": A_DOUBLE, "bytes": A_BYTES, "string": A_STRING}


# --- Avro -------------------------------------------------------------------------


def avro_plan(schema: Any) -> Plan:
    """The plan of `schema`; `UnsupportedSchema` where avrowriter would not compile it
    either, or for a record that refers to itself (the Python writer handles those)."""
    return _AvroPlanner().plan(schema, None)


class _AvroPlanner:
    """avrowriter._Compiler's walk, building plan tuples instead of functions."""

    def __init__(self) -> None:
        self.named: dict[str, Plan | None] = {}  # None: being defined (recursive reference)

    def plan(self, schema: Any, namespace: str | None) -> Plan:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return (_AVRO_PRIMITIVES[schema],)
            return self._reference(schema, namespace)
        if isinstance(schema, list):
            if len(schema) != 2 or "null" not in schema:
                raise UnsupportedSchema("only two-branch nullable unions are supported")
            null_tag, value_tag = _tags(schema)
            return (A_UNION, null_tag, value_tag,
                    self.plan(schema[1 - schema.index("null")], namespace))
        kind = schema["type"]
        if kind == "record":
            return self._record(schema, namespace)
        if kind == "array":
            return (A_ARRAY, self.plan(schema["items"], namespace))
        if kind == "bytes" and schema.get("logicalType") == "decimal":
            return (A_DECIMAL, int(schema.get("scale", 0)), pgtext.unscaled_bytes, Decimal)
        if kind in _PRIMITIVES and "logicalType" not in schema:
            return (_AVRO_PRIMITIVES[kind],)
        raise UnsupportedSchema(f"Avro type {kind!r} (logicalType {schema.get('logicalType')})")

    def _reference(self, name: str, namespace: str | None) -> Plan:
        full_name = name if "." in name else (f"{namespace}.{name}" if namespace else name)
        plan = self.named.get(full_name)
        if plan is None:  # unknown, or a record that contains itself
            raise UnsupportedSchema(f"named type {name!r} (unknown or recursive)")
        return plan

    def _record(self, schema: dict[str, Any], namespace: str | None) -> Plan:
        name = schema["name"]
        record_namespace = schema.get("namespace", namespace)
        if "." in name:
            full_name = name
            record_namespace = name.rpartition(".")[0]
        else:
            full_name = f"{record_namespace}.{name}" if record_namespace else name
        self.named[full_name] = None
        plan = (A_RECORD, tuple(self._field(field, record_namespace)
                                for field in schema["fields"]))
        self.named[full_name] = plan
        return plan

    def _field(self, field: dict[str, Any], namespace: str | None) -> Plan:
        field_type = field["type"]
        null_tag, value_tag = -1, -1
        if isinstance(field_type, list) and len(field_type) == 2 and "null" in field_type:
            null_tag, value_tag = _tags(field_type)
            plan = self.plan(field_type[1 - field_type.index("null")], namespace)
        else:
            plan = self.plan(field_type, namespace)
        return (field["name"], plan, "default" in field, field.get("default"),
                null_tag, value_tag)


def _tags(union: list[Any]) -> tuple[int, int]:
    """(null branch, value branch) zig-zag tags of a two-branch nullable union."""
    return (0, 2) if union.index("null") == 0 else (2, 0)


# --- Connect JSON -----------------------------------------------------------------


def json_plan(schema: dict[str, Any]) -> Plan:
    """The plan of a Connect schema, node for node what `jsonwriter.compile_encoder`
    builds."""
    kind = schema["type"]
    if kind == "struct" and jsonwriter._needs_conversion(schema):
        return (J_STRUCT, tuple(
            ((jsonwriter._plain(field["field"]) + ":").encode(), field["field"], json_plan(field))
            for field in schema["fields"]))
    if kind == "array" and jsonwriter._needs_conversion(schema):
        return (J_ARRAY, json_plan(schema["items"]))
    if kind in ("struct", "array"):
        return (J_PLAIN,)
    if kind == "string":
        return (J_STRING,)
    if kind == "boolean":
        return (J_BOOLEAN,)
    if kind == "bytes":
        return (J_BYTES,)
    if kind == "double":
        return (J_DOUBLE, connectjson.java_double)
    if kind == "float":
        return (J_PYFLOAT, connectjson.java_float)
    if kind in jsonwriter._INT_TYPES:
        return (J_INTEGER,)
    return (J_PLAIN,)
