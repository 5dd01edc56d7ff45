from opentelemetry import trace

from connectors.pgoutput import (
    UNCHANGED_TOAST,
    Delete,
    Insert,
    Message,
    Relation,
    RelationColumn,
    Truncate,
    Update,
)
from connectors.source.catalog import TableDetails
from connectors.source.config import CdcSettings
from connectors.source.events import EventBuilder
from connectors.source.transactions import TxBatch

INT4, TEXT = 23, 25
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
RELATION = Relation(
    16400, "public", "samples", "d",
    (RelationColumn(True, "id", INT4, -1), RelationColumn(False, "note", TEXT, -1),
     RelationColumn(False, "tp", TEXT, -1)),
)


def _builder(**overrides):
    settings = CdcSettings(topic_prefix="lab", **overrides)
    builder = EventBuilder(settings, "lab", lambda oid: TableDetails(("id",), frozenset({"id"})))
    builder.on_relation(RELATION)
    return builder


def _batch(changes, trace_fields=None, xid=42):
    batch = TxBatch(xid, final_lsn=5000, commit_time_us=1_700_000_000_000_000,
                    changes=[(c, 4000 + i) for i, c in enumerate(changes)], end_lsn=5100,
                    final=True)
    batch.trace_fields = trace_fields or {}
    return batch


def test_each_op_with_source_fields_for_dedupe():
    builder = _builder()
    outs = list(builder.batch_events(_batch([
        Insert(16400, ("1", "a", None)),
        Update(16400, None, None, ("1", "b", None)),
        Delete(16400, None, ("1", None, None)),
    ])))
    ops = [(o.event.value or {}).get("op") for o in outs]
    assert ops == ["c", "u", "d", None]  # tombstone after the delete
    assert outs[3].event.key == {"id": 1} and outs[3].event.value is None
    source = outs[0].event.value["source"]
    assert (source["lsn"], source["txId"], source["snapshot"]) == (4000, 42, "false")
    assert source["sequence"] == '[null,"4000"]'
    assert outs[0].event.topic == "lab.public.samples"
    # the next transaction's sequence starts with this one's commit LSN
    nxt = next(builder.batch_events(_batch([Insert(16400, ("2", "x", None))], xid=43)))
    assert nxt.event.value["source"]["sequence"] == '["5100","4000"]'


def test_primary_key_change_is_delete_tombstone_create():
    builder = _builder()
    outs = list(builder.batch_events(_batch([Update(16400, None, ("1", None, None),
                                                    ("2", "a", None))])))
    assert [(o.event.key, (o.event.value or {}).get("op")) for o in outs] == [
        ({"id": 1}, "d"), ({"id": 1}, None), ({"id": 2}, "c")]


def test_primary_key_change_headers_name_the_other_key():
    outs = list(_builder().batch_events(_batch([Update(16400, None, ("1", None, None),
                                                       ("2", "a", None))])))
    assert [o.event.headers for o in outs] == [
        (("__debezium.newkey", b'{"id":2}'),), (("__debezium.newkey", b'{"id":2}'),),
        (("__debezium.oldkey", b'{"id":1}'),)]


FULL_RELATION = Relation(16401, "public", "full", "f", RELATION.columns)


def _full_builder():
    settings = CdcSettings(topic_prefix="lab")
    builder = EventBuilder(settings, "lab", lambda oid: TableDetails(("id",), frozenset({"id"})))
    builder.on_relation(FULL_RELATION)
    return builder


def test_primary_key_change_under_full_identity_is_delete_tombstone_create():
    """FULL sends the whole old row ('O') and no 'K': the key change is seen by comparing."""
    outs = list(_full_builder().batch_events(_batch([
        Update(16401, ("1", "a", None), None, ("2", "a", None))])))
    assert [(o.event.key, (o.event.value or {}).get("op")) for o in outs] == [
        ({"id": 1}, "d"), ({"id": 1}, None), ({"id": 2}, "c")]
    assert outs[0].event.value["before"] == {"id": 1, "note": "a", "tp": None}
    assert outs[2].event.headers == (("__debezium.oldkey", b'{"id":1}'),)


def test_update_under_full_identity_keeps_the_key_and_takes_toast_from_the_old_row():
    (out,) = _full_builder().batch_events(_batch([
        Update(16401, ("1", "big value", "x"), None, ("1", UNCHANGED_TOAST, "y"))]))
    assert out.event.value["op"] == "u" and out.event.headers is None
    assert out.event.value["after"] == {"id": 1, "note": "big value", "tp": "y"}
    assert out.event.value["before"]["note"] == "big value"


def test_unchanged_toast_becomes_debeziums_placeholder():
    builder = _builder()
    (out,) = builder.batch_events(_batch([Update(16400, None, None, ("1", UNCHANGED_TOAST, None))]))
    assert out.event.value["after"]["note"] == "__debezium_unavailable_value"


def test_truncate_is_skipped_by_default_as_debezium_does():
    outs = list(_builder().batch_events(_batch([Truncate((16400,), False, False)])))
    assert outs == []


def test_truncate_and_user_messages_but_not_internal_ones():
    builder = _builder(skipped_operations="none")
    outs = list(builder.batch_events(_batch([
        Truncate((16400, 99999), False, False),
        Message(True, 4001, "audit", b"hello"),
        Message(True, 4002, "labstream-heartbeat", b"1"),
    ])))
    assert [(o.event.topic, o.event.value["op"]) for o in outs] == [
        ("lab.public.samples", "t"), ("lab.message", "m")]
    assert outs[1].event.value["message"] == {"prefix": "audit", "content": b"hello"}


def test_trace_context_from_the_transaction_reaches_every_record():
    builder = _builder()
    outs = list(builder.batch_events(_batch(
        [Insert(16400, ("1", "a", None)), Delete(16400, None, ("1", None, None))],
        trace_fields={"traceparent": TRACEPARENT.encode()})))
    assert len(outs) == 3
    for out in outs:
        span_context = trace.get_current_span(out.context).get_span_context()
        assert format(span_context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"


def test_trace_column_is_used_when_the_transaction_sent_none():
    builder = _builder(trace_column="tp")
    with_column, without = builder.batch_events(_batch([
        Insert(16400, ("1", "a", TRACEPARENT)), Insert(16400, ("2", "a", None))]))
    assert with_column.context is not None and without.context is None


def test_transaction_metadata_when_enabled():
    builder = _builder(provide_transaction_metadata=True)
    outs = list(builder.batch_events(_batch([Insert(16400, ("1", "a", None)),
                                             Insert(16400, ("2", "a", None))])))
    assert outs[0].event.topic == "lab.transaction" and outs[0].event.value["status"] == "BEGIN"
    assert outs[-1].event.value["status"] == "END" and outs[-1].event.value["event_count"] == 2
    assert outs[2].event.value["transaction"] == {
        "id": "42:5000", "total_order": 2, "data_collection_order": 2}


def test_tables_outside_the_include_list_produce_nothing():
    builder = _builder(table_include_list=r"public\.other")
    assert builder.tables == {}
    assert list(builder.batch_events(_batch([Insert(16400, ("1", "a", None))]))) == []


def test_transaction_ids_are_debeziums_begin_and_end_positions():
    builder = _builder(provide_transaction_metadata=True)
    batch = _batch([Insert(16400, ("1", "a", None))])
    batch.begin_lsn = 3900
    outs = list(builder.batch_events(batch))
    begin, change, end = (o.event.value for o in outs)
    assert begin["id"] == change["transaction"]["id"] == "42:3900"  # BEGIN's own position
    assert end["id"] == "42:5100"  # the commit's end, as Debezium writes the END
