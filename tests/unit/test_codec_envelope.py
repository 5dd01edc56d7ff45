"""Our envelope compared field by field with Debezium's documented and registered events.

Fixtures in tests/fixtures/debezium/ say where each came from (`_source`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.envelope import (
    SourceBlocks,
    SourceInfo,
    TransactionInfo,
    build_change_event,
    message_event,
    tombstone_for,
    transaction_begin_event,
    transaction_end_event,
)
from connectors.pgoids import BYTEA, INT4, TEXT, TIMESTAMP, VARCHAR
from connectors.pgoutput import UNCHANGED_TOAST, Relation, RelationColumn
from connectors.schema import SNAPSHOT_ALLOWED, TableSchema
from connectors.serde import JsonConverterSerializer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "debezium"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def customers(prefix: str = "PostgreSQL_server", schema: str = "inventory") -> TableSchema:
    columns = (
        RelationColumn(True, "id", INT4, -1),
        RelationColumn(False, "first_name", VARCHAR, 259),  # varchar(255): typmod 255 + 4
        RelationColumn(False, "last_name", VARCHAR, 259),
        RelationColumn(False, "email", VARCHAR, 259),
    )
    return TableSchema.from_relation(
        Relation(16384, schema, "customers", "d", columns),
        topic_prefix=prefix,
        not_null_columns={"id", "first_name", "last_name", "email"},
    )


def doc_source(doc: dict[str, Any], **overrides: Any) -> SourceInfo:
    values = {
        "name": doc["name"], "db": doc["db"], "schema": doc["schema"], "table": doc["table"],
        "ts_us": doc["ts_us"], "lsn": doc["lsn"], "tx_id": doc["txId"],
        "snapshot": "true" if doc["snapshot"] is True else "false",
    }
    values.update(overrides)
    return SourceInfo(**values)


def by_field(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["field"]: f for f in schema["fields"]}


def test_create_event_schema_matches_the_documented_one() -> None:
    documented = fixture("postgresql_customers_create.json")["event"]["schema"]
    table = customers()
    ours = json.loads(JsonConverterSerializer().value_bytes(
        build_change_event(table, "c", None, {"id": 1, "first_name": "a", "last_name": "b",
                                              "email": "c"},
                           doc_source(fixture("postgresql_customers_create.json")["event"]
                                      ["payload"]["source"]), None, 0)
    ))["schema"]
    # The doc names the Value/Envelope after the database ("inventory"); the text and
    # the topic rule say <prefix>.<schema>.<table>, which is what we built with schema=inventory.
    assert ours["name"] == documented["name"]
    assert (ours["type"], ours["optional"]) == (documented["type"], documented["optional"])
    ours_fields, doc_fields = by_field(ours), by_field(documented)
    for row in ("before", "after"):
        assert ours_fields[row]["name"] == doc_fields[row]["name"]
        assert ours_fields[row]["optional"] is True
        assert ours_fields[row]["fields"] == doc_fields[row]["fields"]
    for name in ("op", "ts_ms", "ts_us", "ts_ns"):
        assert ours_fields[name] == doc_fields[name]
    # Source: same name and optionality; every documented field is present with its type,
    # except two places where the doc example predates Debezium 2.x (verified against the
    # registered Avro schema fixture below): `snapshot` is an Enum string, and
    # `ts_us`/`ts_ns` are optional, and `sequence` (present in the doc payload) is declared.
    ours_source, doc_source_fields = by_field(ours_fields["source"]), by_field(doc_fields["source"])
    assert ours_fields["source"]["name"] == doc_fields["source"]["name"]
    assert ours_fields["source"]["optional"] is False
    for name, field in doc_source_fields.items():
        if name in ("snapshot", "ts_us", "ts_ns"):
            continue
        assert ours_source[name] == field, name
    assert ours_source["snapshot"]["name"] == "io.debezium.data.Enum"
    assert ours_source["sequence"]["type"] == "string"
    # What the doc does not show but Debezium 2.x always has: the transaction block.
    assert ours_fields["transaction"]["name"] == "event.block"


def test_create_event_payload_matches_the_documented_one() -> None:
    documented = fixture("postgresql_customers_create.json")["event"]["payload"]
    table = customers()
    after = table.row_to_values(("1", "Anne", "Kretchmar", "annek@noanswer.org"))
    source = doc_source(documented["source"], last_commit_lsn=24023119)
    event = build_change_event(table, "c", None, after, source, None,
                               ts_us=documented["ts_us"])
    payload = json.loads(JsonConverterSerializer().value_bytes(event))["payload"]
    assert payload["before"] is None
    assert payload["after"] == documented["after"]
    assert payload["op"] == "c"
    assert payload["ts_ms"] == documented["ts_ms"]
    assert payload["ts_us"] == documented["ts_us"]
    # Debezium 3.x (seen in 3.6.1's real output) adds the replication origin, null locally
    expected_source = dict(documented["source"], snapshot="true", origin=None, origin_lsn=None)
    for name, value in expected_source.items():
        if name == "version":
            continue
        assert payload["source"][name] == value, name
    assert set(payload["source"]) == set(expected_source)
    assert json.loads(payload["source"]["sequence"]) == ["24023119", "24023128"]
    assert event.key == {"id": 1}
    key = json.loads(JsonConverterSerializer().key_bytes(event))
    assert key == {"schema": {"type": "struct", "fields": [
        {"type": "int32", "optional": False, "field": "id"}], "optional": False,
        "name": "PostgreSQL_server.inventory.customers.Key"}, "payload": {"id": 1}}


def test_update_and_delete_payloads_match_the_documented_ones() -> None:
    documented = fixture("postgresql_customers_update_delete.json")
    table = customers()
    update = documented["update"]
    after = table.row_to_values(("1", "Anne Marie", "Kretchmar", "annek@noanswer.org"))
    event = build_change_event(table, "u", None, after, doc_source(update["source"]), None)
    assert event.value["after"] == update["after"]
    assert event.value["op"] == "u"
    assert {k: event.value["source"][k] for k in update["source"] if k != "version"} == {
        k: (v if k != "snapshot" else "false") for k, v in update["source"].items()
        if k != "version"
    }

    delete = documented["delete"]
    # pgoutput sends the replica identity key ('K') with the other columns NULL; Debezium
    # fills required (NOT NULL) columns of `before` with their type's fallback ("" here).
    before = table.row_to_values(("1", None, None, None))
    assert before == {"id": 1, "first_name": "", "last_name": "", "email": ""}
    event = build_change_event(table, "d", before, None, doc_source(delete["source"]), None)
    assert {k: v for k, v in event.value["before"].items() if k in delete["before"]} == \
        delete["before"]
    assert event.value["after"] is None and event.value["op"] == "d"
    assert event.key == {"id": 1}
    tombstone = tombstone_for(event)
    assert (tombstone.topic, tombstone.key, tombstone.value) == (event.topic, {"id": 1}, None)


def test_transaction_metadata_values_match_the_documented_ones() -> None:
    documented = fixture("postgresql_customers_update_delete.json")
    begin = transaction_begin_event("lab", "571:53195829", 1486500577125)
    assert begin.topic == "lab.transaction"
    assert begin.key == {"id": "571:53195829"}
    assert begin.value == documented["transaction_begin"]
    end = transaction_end_event("lab", "571:53195832", 1486500577691, {"s1.a": 1, "s2.a": 1})
    assert end.value == documented["transaction_end"]


def _strip_column_defaults(schema: Any) -> Any:
    """Remove what only column DEFAULTs produce (labstream does not propagate them)."""
    if isinstance(schema, dict):
        cleaned = {
            k: _strip_column_defaults(v) for k, v in schema.items() if k != "connect.default"
        }
        if isinstance(cleaned.get("type"), list) and cleaned.get("default") not in (None,):
            cleaned["type"] = ["null", *[t for t in cleaned["type"] if t != "null"]]
            cleaned["default"] = None
        elif isinstance(cleaned.get("type"), dict) and "default" in cleaned:
            del cleaned["default"]
            if cleaned["type"] == {"type": "int"}:
                cleaned["type"] = "int"
        return cleaned
    if isinstance(schema, list):
        return [_strip_column_defaults(item) for item in schema]
    return schema


def test_value_avro_schema_equals_what_debezium_registers() -> None:
    registered = fixture("postgresql_users_envelope_avro.json")["schema"]
    columns = (
        RelationColumn(True, "id", INT4, -1),
        RelationColumn(False, "user_id", TEXT, -1),
        RelationColumn(False, "email", TEXT, -1),
        RelationColumn(False, "country", TEXT, -1),
        RelationColumn(False, "created_at", TIMESTAMP, -1),
        RelationColumn(False, "updated_at", TIMESTAMP, -1),
    )
    table = TableSchema.from_relation(
        Relation(1, "public", "users", "d", columns), topic_prefix="demo",
        not_null_columns={"id", "user_id"},
    )
    expected = copy.deepcopy(registered)
    # The fixture predates Debezium's first/first_in_data_collection/last_in_data_collection
    # snapshot markers; we declare the newer value list (the connector emits those markers).
    snapshot = expected["fields"][2]["type"]["fields"][4]
    assert snapshot["name"] == "snapshot"
    assert snapshot["type"][0]["connect.parameters"] == {"allowed": "true,last,false,incremental"}
    snapshot["type"][0]["connect.parameters"] = {"allowed": SNAPSHOT_ALLOWED}
    # The fixture is Debezium 2.x's; 3.x's Source (seen in 3.6.1's real output) is version 1
    # and ends with the replication origin fields.
    source = expected["fields"][2]["type"]
    source["connect.version"] = 1
    source["fields"] += [{"name": "origin", "type": ["null", "string"], "default": None},
                         {"name": "origin_lsn", "type": ["null", "long"], "default": None}]
    # Only the row record carries column defaults; Source's snapshot default is Debezium's own.
    expected["fields"][0] = _strip_column_defaults(expected["fields"][0])
    expected["fields"][0]["default"] = None
    assert table.value_avro == expected


def test_toasted_and_null_values() -> None:
    columns = (RelationColumn(True, "id", INT4, -1), RelationColumn(False, "doc", TEXT, -1),
               RelationColumn(False, "blob", BYTEA, -1), RelationColumn(False, "n", TEXT, -1))
    table = TableSchema.from_relation(Relation(2, "public", "t", "d", columns), topic_prefix="lab")
    values = table.row_to_values(("7", UNCHANGED_TOAST, UNCHANGED_TOAST, None))
    assert values == {"id": 7, "doc": "__debezium_unavailable_value",
                      "blob": b"__debezium_unavailable_value", "n": None}


def test_truncate_and_message_events() -> None:
    table = customers("lab", "public")
    source = SourceInfo(name="lab", db="lab", schema="public", table="customers",
                        ts_us=1, lsn=10, tx_id=5)
    truncate = build_change_event(table, "t", None, None, source, None)
    assert truncate.key is None and truncate.value["op"] == "t"
    message_source = SourceInfo(name="lab", db="lab", schema="", table="", ts_us=1, lsn=11,
                                tx_id=5)
    message = message_event("lab", "traceparent", b"00-abc-01", message_source,
                            TransactionInfo("5:11", 1, 1), ts_ms=3)
    assert message.topic == "lab.message"
    assert message.key == {"prefix": "traceparent"}
    assert message.value["message"] == {"prefix": "traceparent", "content": b"00-abc-01"}
    assert list(message.value) == ["op", "ts_ms", "source", "transaction", "message"]


def test_envelope_field_order_is_debeziums() -> None:
    table = customers("lab", "public")
    names = [f["name"] for f in table.value_avro["fields"]]
    assert names == ["before", "after", "source", "transaction", "op", "ts_ms", "ts_us", "ts_ns"]
    event = build_change_event(table, "c", None, {"id": 1, "first_name": "", "last_name": "",
                                                  "email": ""},
                               SourceInfo(name="lab", db="lab", schema="public",
                                          table="customers", ts_us=0, lsn=None), None, 0)
    assert list(event.value) == names


@pytest.mark.parametrize(("column", "field"), [("cell-culture", "cell_culture"), ("1st", "_1st")])
def test_non_avro_names_are_adjusted_like_debezium(column: str, field: str) -> None:
    table = TableSchema.from_relation(
        Relation(3, "public", "odd-table", "d", (RelationColumn(True, column, INT4, -1),)),
        topic_prefix="lab",
    )
    assert table.topic == "lab.public.odd-table"
    assert table.value_avro["namespace"] == "lab.public.odd_table"
    assert table.key_avro["fields"][0]["name"] == field
    assert table.row_to_values(("5",)) == {field: 5}


def test_json_schema_keys_follow_jsonconverter_order() -> None:
    source = by_field(customers().value_connect_schema)["source"]
    snapshot = by_field(source)["snapshot"]
    # JsonConverter writes type, optional, name, version, parameters, default, then field.
    assert list(snapshot) == ["type", "optional", "name", "version", "parameters", "default",
                              "field"]
    envelope = customers().value_connect_schema
    assert list(envelope) == ["type", "fields", "optional", "name", "version"]


@given(st.none() | st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
       st.none() | st.integers(0, 2**32))
def test_source_blocks_equal_source_info_to_dict(last: int | None, lsn: int,
                                                 tx_id: int | None) -> None:
    info = SourceInfo(name="lab", db="lab", schema="public", table="t", ts_us=1_700_000_000_123_456,
                      lsn=0, tx_id=tx_id, last_commit_lsn=last)
    expected = SourceInfo(name="lab", db="lab", schema="public", table="t",
                          ts_us=1_700_000_000_123_456, lsn=lsn, tx_id=tx_id,
                          last_commit_lsn=last).to_dict()
    block = SourceBlocks(info).at(lsn)
    assert list(block.items()) == list(expected.items())  # same fields, same order
