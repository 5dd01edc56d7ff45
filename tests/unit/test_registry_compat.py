"""Compatibility levels as Confluent's registry applies them (connectors.registry.compat),
and the REST server's parsing of versions and ids."""

from __future__ import annotations

import json

import pytest

from connectors.exceptions import InvalidSchema
from connectors.registry import compat
from connectors.registry.db import check_id_offset
from connectors.registry.server import RegistryHttpError, parse_id, parse_version


def record(*fields: tuple[str, object], default: bool = False) -> str:
    out = [{"name": "id", "type": "int"}]
    for name, kind in fields:
        field: dict[str, object] = {"name": name, "type": kind}
        if default:
            field["default"] = None
        out.append(field)
    return json.dumps({"type": "record", "name": "V", "fields": out})


BASE = record()
OPTIONAL = record(("note", ["null", "string"]), default=True)
REQUIRED = record(("qty", "int"))
LONG_ID = json.dumps({"type": "record", "name": "V", "fields": [{"name": "id", "type": "long"}]})


def test_backward_allows_an_optional_field_and_refuses_a_required_one() -> None:
    assert compat.incompatibilities("BACKWARD", OPTIONAL, [BASE]) == []
    problems = compat.incompatibilities("BACKWARD", REQUIRED, [BASE])
    assert len(problems) == 1 and "qty" in problems[0] and "missing_default" in problems[0]


def test_dropping_a_field_is_backward_but_not_forward_when_it_has_no_default() -> None:
    assert compat.incompatibilities("BACKWARD", BASE, [REQUIRED]) == []
    assert compat.incompatibilities("FORWARD", BASE, [REQUIRED]) != []
    assert compat.incompatibilities("FULL", BASE, [REQUIRED]) != []


def test_type_promotion_int_to_long_is_backward_only() -> None:
    assert compat.incompatibilities("BACKWARD", LONG_ID, [BASE]) == []
    assert compat.incompatibilities("FORWARD", LONG_ID, [BASE]) != []


def test_transitive_levels_check_every_version_plain_levels_only_the_latest() -> None:
    # REQUIRED then OPTIONAL-with-qty-dropped: fine against the latest, not against v1
    history = [BASE, REQUIRED]
    candidate = record(("qty", "int"), ("extra", "string"))
    assert compat.incompatibilities("BACKWARD", candidate, history) != []  # extra: no default
    newest_only = record(("qty", "int"))
    assert compat.incompatibilities("BACKWARD", newest_only, history) == []
    assert compat.incompatibilities("BACKWARD_TRANSITIVE", newest_only, history) != []


def test_none_and_an_empty_history_accept_anything() -> None:
    assert compat.incompatibilities("NONE", REQUIRED, [BASE]) == []
    assert compat.incompatibilities("FULL_TRANSITIVE", REQUIRED, []) == []


def test_levels_are_checked_and_invalid_schemas_named() -> None:
    assert compat.check_level(" full ") == "FULL"
    with pytest.raises(ValueError, match="SIDEWAYS"):
        compat.check_level("SIDEWAYS")
    with pytest.raises(InvalidSchema, match="invalid Avro schema"):
        compat.parse('{"type": "record", "name": "V"}')  # no fields


def test_versions_and_ids_parse_as_confluent_does() -> None:
    assert parse_version("latest") is None and parse_version("-1") is None
    assert parse_version("3") == 3
    for bad in ("0", "abc", "2147483648", "1.5"):
        with pytest.raises(RegistryHttpError) as err:
            parse_version(bad)
        assert (err.value.status, err.value.code) == (422, 42202)
    assert parse_id("1000000001") == 1_000_000_001
    with pytest.raises(RegistryHttpError):
        parse_id("-4")


def test_id_offset_stays_inside_the_signed_32_bit_framing() -> None:
    assert check_id_offset(1_000_000_000) == 1_000_000_000
    for bad in (0, 2**31 - 1, 2**32):
        with pytest.raises(ValueError, match="LABSTREAM_SCHEMA_REGISTRY_ID_OFFSET"):
            check_id_offset(bad)


def test_every_schema_the_connector_writes_parses_and_is_compatible_with_itself() -> None:
    # the registry parses with Apache Avro, the connector writes with fastavro: a type
    # whose schema only one of them accepts would stop the connector at registration
    from connectors import pgoids
    from connectors.envelope import message_schemas, transaction_schemas
    from connectors.pgoutput import Relation, RelationColumn
    from connectors.schema import TableSchema
    from connectors.serde import schema_text

    oids = sorted({v for k, v in vars(pgoids).items() if k.isupper() and isinstance(v, int)}
                  | set(pgoids.BUILTIN_ARRAYS))
    columns = [RelationColumn(i == 0, f"c{oid}", oid, -1) for i, oid in enumerate(oids)]
    columns.append(RelationColumn(False, "amount", pgoids.NUMERIC, ((10 << 16) | 2) + 4))
    table = TableSchema.from_relation(
        Relation(1, "public", "all-types", "f", tuple(columns)), topic_prefix="lab",
        not_null_columns={"c16"}, primary_key=[columns[0].name])
    fixed = [transaction_schemas("lab"), message_schemas("lab")]
    schemas = [table.key_avro, table.value_avro, *(f.key_avro for f in fixed),
               *(f.value_avro for f in fixed)]
    assert len(oids) > 70
    for schema in schemas:
        text = schema_text(schema)
        assert compat.incompatibilities("FULL_TRANSITIVE", text, [text, text]) == []
