from connectors.pgoutput import Begin, Commit, Insert, Message, Relation, RelationColumn
from connectors.source.transactions import TransactionAssembler

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _assembler(max_buffered=1000):
    batches, relations, standalone = [], [], []
    assembler = TransactionAssembler(batches.append, relations.append, standalone.append,
                                     max_buffered=max_buffered)
    return assembler, batches, relations, standalone


def _tx(assembler, xid, changes, *, mid_message=None):
    assembler.feed(Begin(final_lsn=xid * 100 + 90, commit_time_us=1, xid=xid), xid * 100)
    for i, change in enumerate(changes):
        if mid_message is not None and i == mid_message:
            lsn = xid * 100 + 50
            assembler.feed(Message(True, lsn, "traceparent", TRACEPARENT), lsn)
        assembler.feed(change, xid * 100 + i + 1)
    assembler.feed(Commit(0, xid * 100 + 90, xid * 100 + 99, 2), xid * 100 + 90)


def test_a_trace_message_mid_transaction_covers_the_earlier_rows():
    assembler, batches, _, _ = _assembler()
    _tx(assembler, 7, [Insert(1, ("a",)), Insert(1, ("b",)), Insert(1, ("c",))], mid_message=2)
    (batch,) = batches
    assert batch.final and batch.end_lsn == 799 and batch.final_lsn == 790
    assert batch.trace_fields == {"traceparent": TRACEPARENT}
    assert [lsn for _, lsn in batch.changes] == [701, 702, 703]  # message is not a change


def test_user_messages_stay_in_the_transaction_and_relations_are_reported():
    assembler, batches, relations, standalone = _assembler()
    relation = Relation(1, "public", "t", "d", (RelationColumn(True, "id", 23, -1),))
    assembler.feed(relation, 5)
    _tx(assembler, 1, [Message(True, 150, "audit", b"x"), Insert(1, ("1",))])
    assembler.feed(Message(False, 900, "labstream-heartbeat", b"1"), 900)
    assert relations == [relation]
    assert [type(c).__name__ for c, _ in batches[0].changes] == ["Message", "Insert"]
    assert standalone[0].lsn == 900 and not standalone[0].message.transactional


def test_large_transactions_are_sent_in_parts_and_only_the_last_is_final():
    assembler, batches, _, _ = _assembler(max_buffered=2)
    _tx(assembler, 3, [Insert(1, (str(i),)) for i in range(5)])
    assert [len(b.changes) for b in batches] == [2, 2, 1]
    assert [b.final for b in batches] == [False, False, True]
    assert [b.first for b in batches] == [True, False, False]
    assert batches[-1].sequence_start == 4
    assert not assembler.in_transaction
