"""One captured table's Kafka schemas: Debezium's Key, Value and Envelope.

`TableSchema.from_relation(relation, ...)` is built once per pgoutput Relation
message (and again whenever the table changes); the hot path then only calls
`row_to_values(tuple_data)` and `key_of(values)`. The Avro schemas are what
Confluent's AvroConverter writes for Debezium's Connect schemas (`connect.name`,
`connect.version`, `connect.parameters`, nullable unions with `default: null`),
so a consumer written for Debezium reads ours unchanged. The Connect schemas are
what Debezium's JsonConverter prints in `{"schema": ..., "payload": ...}`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from base.contracts.topics import cdc_topic
from connectors.compiled import load as _load_compiled
from connectors.exceptions import ConversionError, SchemaError
from connectors.pgoutput import UNCHANGED_TOAST, Relation, TupleValue
from connectors.pgtypes import (
    DecimalHandlingMode,
    FieldCodec,
    TypeResolver,
    codec_for,
    no_resolver,
)

SOURCE_SCHEMA_NAME = "io.debezium.connector.postgresql.Source"
# Debezium's newer SnapshotRecord values, in its enum order (older: true,last,false,incremental).
SNAPSHOT_ALLOWED = (
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"
)
TRANSACTION_BLOCK_NAME = "event.block"
ENVELOPE_VERSION = 2

_INVALID_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")
_INTEGER_OIDS = frozenset({20, 21, 23})  # int8, int2, int4

_FAST = _load_compiled()  # the compiled row loop (connectors/_speedups.c) or None


def avro_name(name: str) -> str:
    """Debezium's `avro` name adjustment: invalid characters become `_`."""
    adjusted = _INVALID_NAME_CHAR.sub("_", name)
    if not adjusted or adjusted[0].isdigit():
        adjusted = "_" + adjusted
    return adjusted


def avro_namespace(dotted: str) -> str:
    return ".".join(avro_name(part) for part in dotted.split("."))


@dataclass(frozen=True, slots=True)
class ColumnSchema:
    name: str  # the PostgreSQL column name
    field: str  # its Avro/Connect field name (adjusted)
    type_oid: int
    type_modifier: int
    optional: bool
    codec: FieldCodec
    # a required integer column whose default is nextval(): Debezium's schema says
    # `"default": 0` (it cannot evaluate the sequence, 0 is the type's zero)
    serial: bool = False


def _fallback(connect: dict[str, Any]) -> Any:
    """What Debezium emits for NULL in a required column (e.g. a delete's key-only `before`)."""
    connect_type = connect["type"]
    name = connect.get("name", "")
    if name == "io.debezium.time.ZonedTimestamp":
        return "1970-01-01T00:00:00Z"
    if name == "io.debezium.time.ZonedTime":
        return "00:00:00Z"
    if name == "io.debezium.data.VariableScaleDecimal":
        return {"scale": 0, "value": b"\x00"}
    if name == "io.debezium.data.geometry.Point":
        return {"x": 0.0, "y": 0.0, "wkb": None, "srid": None}
    return {
        "int8": 0, "int16": 0, "int32": 0, "int64": 0, "float": 0.0, "double": 0.0,
        "boolean": False, "string": "", "array": [],
        "bytes": b"\x00" if name == "org.apache.kafka.connect.data.Decimal" else b"",
    }.get(connect_type)


# --- the fixed parts of the envelope ------------------------------------------

_SNAPSHOT_AVRO = {
    "type": "string",
    "connect.version": 1,
    "connect.parameters": {"allowed": SNAPSHOT_ALLOWED},
    "connect.default": "false",
    "connect.name": "io.debezium.data.Enum",
}
_OPT_LONG = {"type": ["null", "long"], "default": None}
_OPT_STRING = {"type": ["null", "string"], "default": None}

SOURCE_AVRO: dict[str, Any] = {
    "type": "record",
    "name": "Source",
    "namespace": "io.debezium.connector.postgresql",
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "snapshot", "type": [_SNAPSHOT_AVRO, "null"], "default": "false"},
        {"name": "db", "type": "string"},
        {"name": "sequence", **_OPT_STRING},
        {"name": "ts_us", **_OPT_LONG},
        {"name": "ts_ns", **_OPT_LONG},
        {"name": "schema", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "txId", **_OPT_LONG},
        {"name": "lsn", **_OPT_LONG},
        {"name": "xmin", **_OPT_LONG},
        # Debezium 3.x: the replication origin of the change (none for local writes)
        {"name": "origin", **_OPT_STRING},
        {"name": "origin_lsn", **_OPT_LONG},
    ],
    "connect.version": 1,
    "connect.name": SOURCE_SCHEMA_NAME,
}

TRANSACTION_BLOCK_AVRO: dict[str, Any] = {
    "type": "record",
    "name": "block",
    "namespace": "event",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "total_order", "type": "long"},
        {"name": "data_collection_order", "type": "long"},
    ],
    "connect.version": 1,
    "connect.name": TRANSACTION_BLOCK_NAME,
}


def _c(connect_type: str, field: str, optional: bool, **extra: Any) -> dict[str, Any]:
    """A Connect field schema in JsonConverter's key order."""
    schema: dict[str, Any] = {"type": connect_type, "optional": optional}
    for key in ("name", "version", "doc", "parameters", "default"):
        if key in extra:
            schema[key] = extra[key]
    schema["field"] = field
    return schema


SOURCE_CONNECT: dict[str, Any] = {
    "type": "struct",
    "fields": [
        _c("string", "version", False),
        _c("string", "connector", False),
        _c("string", "name", False),
        _c("int64", "ts_ms", False),
        _c("string", "snapshot", True, default="false", name="io.debezium.data.Enum",
           version=1, parameters={"allowed": SNAPSHOT_ALLOWED}),
        _c("string", "db", False),
        _c("string", "sequence", True),
        _c("int64", "ts_us", True),
        _c("int64", "ts_ns", True),
        _c("string", "schema", False),
        _c("string", "table", False),
        _c("int64", "txId", True),
        _c("int64", "lsn", True),
        _c("int64", "xmin", True),
        _c("string", "origin", True),
        _c("int64", "origin_lsn", True),
    ],
    "optional": False,
    "name": SOURCE_SCHEMA_NAME,
    "version": 1,
    "field": "source",
}

TRANSACTION_BLOCK_CONNECT: dict[str, Any] = {
    "type": "struct",
    "fields": [
        _c("string", "id", False),
        _c("int64", "total_order", False),
        _c("int64", "data_collection_order", False),
    ],
    "optional": True,
    "name": TRANSACTION_BLOCK_NAME,
    "version": 1,
    "field": "transaction",
}


def _envelope_tail_connect() -> list[dict[str, Any]]:
    return [
        _c("string", "op", False),
        _c("int64", "ts_ms", True),
        _c("int64", "ts_us", True),
        _c("int64", "ts_ns", True),
    ]


_ENVELOPE_TAIL_AVRO = [
    {"name": "op", "type": "string"},
    {"name": "ts_ms", **_OPT_LONG},
    {"name": "ts_us", **_OPT_LONG},
    {"name": "ts_ns", **_OPT_LONG},
]


class TableSchema:
    """Schemas and row conversion for one table (one `<prefix>.<schema>.<table>` topic)."""

    __slots__ = (
        "_converters", "columns", "fingerprint", "key_avro", "key_columns",
        "key_connect_schema", "key_fields", "relation_oid", "schema_name", "server_name",
        "table_name", "topic", "value_avro", "value_connect_schema", "value_record_name",
    )

    def __init__(
        self,
        *,
        relation_oid: int,
        schema_name: str,
        table_name: str,
        topic_prefix: str,
        server_name: str,
        columns: Sequence[ColumnSchema],
        key_columns: Sequence[str],
    ) -> None:
        self.relation_oid = relation_oid
        self.schema_name = schema_name
        self.table_name = table_name
        self.server_name = server_name
        self.topic = cdc_topic(topic_prefix, schema_name, table_name)
        self.columns = tuple(columns)
        self.key_columns = tuple(key_columns)
        by_name = {column.name: column for column in self.columns}
        missing = [name for name in self.key_columns if name not in by_name]
        if missing:
            raise SchemaError(
                f"key column(s) {missing} are not columns of {schema_name}.{table_name}",
                hint="pass the table's primary key columns as they appear in the relation",
            )
        self.key_fields = tuple(by_name[name].field for name in self.key_columns)
        namespace = avro_namespace(self.topic)
        self.value_record_name = f"{namespace}.Value"
        self.key_avro = self._key_avro(namespace, by_name) if self.key_columns else None
        self.value_avro = self._envelope_avro(namespace)
        self.key_connect_schema = (
            self._key_connect(namespace, by_name) if self.key_columns else None
        )
        self.value_connect_schema = self._envelope_connect(namespace)
        self.fingerprint = hashlib.sha256(
            json.dumps([self.key_avro, self.value_avro], sort_keys=True).encode()
        ).hexdigest()
        self._converters = tuple(
            (c.field, c.codec.convert, c.optional, _fallback(c.codec.connect), c.codec.placeholder,
             c.name, c.codec.pg_type)
            for c in self.columns
        )

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_relation(
        cls,
        relation: Relation,
        *,
        topic_prefix: str,
        resolver: TypeResolver = no_resolver,
        not_null_columns: Collection[str] | None = None,
        decimal_handling_mode: DecimalHandlingMode = "precise",
        server_name: str | None = None,
        primary_key: Sequence[str] | None = None,
        serial_columns: Collection[str] = (),
    ) -> TableSchema:
        """Build from a pgoutput Relation.

        `primary_key` (from pg_index) wins; without it the Relation's key flags are used,
        except under REPLICA IDENTITY FULL where every column is flagged (then: no key).
        `not_null_columns` comes from pg_attribute.attnotnull; unknown -> only key columns
        are required.
        """
        if primary_key is not None:
            key_columns = tuple(primary_key)
        elif relation.replica_identity == "f":
            key_columns = ()
        else:
            key_columns = tuple(c.name for c in relation.columns if c.is_key)
        required = set(not_null_columns) if not_null_columns is not None else set(key_columns)
        required.update(key_columns)
        columns = [
            ColumnSchema(
                name=c.name,
                field=avro_name(c.name),
                type_oid=c.type_oid,
                type_modifier=c.type_modifier,
                optional=c.name not in required,
                serial=c.name in serial_columns and c.name in required
                and c.type_oid in _INTEGER_OIDS,
                codec=codec_for(
                    c.type_oid, c.type_modifier, resolver,
                    decimal_handling_mode=decimal_handling_mode,
                ),
            )
            for c in relation.columns
        ]
        return cls(
            relation_oid=relation.oid,
            schema_name=relation.namespace or "pg_catalog",
            table_name=relation.name,
            topic_prefix=topic_prefix,
            server_name=server_name or topic_prefix,
            columns=columns,
            key_columns=key_columns,
        )

    def _fields_avro(self, columns: Iterable[ColumnSchema]) -> list[dict[str, Any]]:
        defined: set[str] = set()
        fields = []
        for column in columns:
            field: dict[str, Any] = {
                "name": column.field, "type": column.codec.avro_type(column.optional, defined)
            }
            if column.optional:
                field["default"] = None
            elif column.serial:
                field["default"] = 0
            fields.append(field)
        return fields

    def _key_avro(self, namespace: str, by_name: dict[str, ColumnSchema]) -> dict[str, Any]:
        return {
            "type": "record",
            "name": "Key",
            "namespace": namespace,
            "fields": self._fields_avro(by_name[name] for name in self.key_columns),
            "connect.name": f"{namespace}.Key",
        }

    def _envelope_avro(self, namespace: str) -> dict[str, Any]:
        value_record = {
            "type": "record",
            "name": "Value",
            "fields": self._fields_avro(self.columns),
            "connect.name": f"{namespace}.Value",
        }
        return {
            "type": "record",
            "name": "Envelope",
            "namespace": namespace,
            "fields": [
                {"name": "before", "type": ["null", value_record], "default": None},
                {"name": "after", "type": ["null", "Value"], "default": None},
                {"name": "source", "type": SOURCE_AVRO},
                {"name": "transaction", "type": ["null", TRANSACTION_BLOCK_AVRO], "default": None},
                *_ENVELOPE_TAIL_AVRO,
            ],
            "connect.version": ENVELOPE_VERSION,
            "connect.name": f"{namespace}.Envelope",
        }

    def _fields_connect(self, columns: Iterable[ColumnSchema]) -> list[dict[str, Any]]:
        return [
            {**column.codec.connect_schema(column.optional),
             **({"default": 0} if column.serial else {}), "field": column.field}
            for column in columns
        ]

    def _key_connect(self, namespace: str, by_name: dict[str, ColumnSchema]) -> dict[str, Any]:
        return {
            "type": "struct",
            "fields": self._fields_connect(by_name[name] for name in self.key_columns),
            "optional": False,
            "name": f"{namespace}.Key",
        }

    def _envelope_connect(self, namespace: str) -> dict[str, Any]:
        def row(field: str) -> dict[str, Any]:
            return {
                "type": "struct",
                "fields": self._fields_connect(self.columns),
                "optional": True,
                "name": f"{namespace}.Value",
                "field": field,
            }

        return {
            "type": "struct",
            "fields": [
                row("before"), row("after"), SOURCE_CONNECT, TRANSACTION_BLOCK_CONNECT,
                *_envelope_tail_connect(),
            ],
            "optional": False,
            "name": f"{namespace}.Envelope",
            "version": ENVELOPE_VERSION,
        }

    # -- the hot path ---------------------------------------------------------

    def row_to_values(self, tuple_data: Sequence[TupleValue]) -> dict[str, Any]:
        """pgoutput tuple (text values) -> `{field: Debezium value}` in column order."""
        if _FAST is not None:  # compiled loop; None: a value failed, reported below
            made: dict[str, Any] | None = _FAST.row_values(self._converters, tuple_data,
                                                           UNCHANGED_TOAST)
            if made is not None:
                return made
        if len(tuple_data) != len(self._converters):
            raise ConversionError(
                f"{self.topic}: tuple has {len(tuple_data)} values for "
                f"{len(self._converters)} columns",
                hint="the Relation message for this table was not applied before its rows",
            )
        values: dict[str, Any] = {}
        for (field, convert, optional, fallback, placeholder, name, pg_type), text in zip(
            self._converters, tuple_data, strict=True
        ):
            if text is None:
                value = None
            elif text is UNCHANGED_TOAST:
                value = placeholder
            else:
                try:
                    value = convert(text)  # type: ignore[arg-type]
                except (ValueError, ArithmeticError, IndexError) as exc:
                    raise ConversionError(
                        f"{self.topic}.{name}: cannot convert {pg_type} value "
                        f"{str(text)[:80]!r}: {exc}",
                        hint="check the walsender's DateStyle/IntervalStyle/bytea_output settings",
                    ) from exc
            if value is None and not optional:
                value = fallback
            values[field] = value
        return values

    def key_of(self, values: dict[str, Any] | None) -> dict[str, Any] | None:
        """The Kafka key for a row (`None` when the table has no primary key)."""
        if values is None or not self.key_fields:
            return None
        return {field: values[field] for field in self.key_fields}

    def __repr__(self) -> str:
        return f"TableSchema({self.topic!r}, key={self.key_columns}, columns={len(self.columns)})"
