from connectors.pgoutput import Relation
from connectors.source.catalog import TableRef
from connectors.source.snapshot import mark_rows


def _tables(*sizes):
    out = []
    for index, size in enumerate(sizes):
        ref = TableRef(index, "public", f"t{index}")
        relation = Relation(index, "public", f"t{index}", "d", ())
        out.append((ref, relation, iter([(str(i),) for i in range(size)])))
    return iter(out)


def _markers(*sizes):
    return [(row.table.name, row.marker) for row in mark_rows(_tables(*sizes))]


def test_debezium_markers_across_tables():
    assert _markers(3, 2) == [
        ("t0", "first"), ("t0", "true"), ("t0", "last_in_data_collection"),
        ("t1", "first_in_data_collection"), ("t1", "last"),
    ]


def test_empty_tables_do_not_swallow_the_last_marker():
    assert _markers(2, 0) == [("t0", "first"), ("t0", "last")]
    assert _markers(0, 1, 0) == [("t1", "last")]


def test_single_row_tables():
    assert _markers(1, 1, 1) == [
        ("t0", "first"), ("t1", "last_in_data_collection"), ("t2", "last"),
    ]
    assert _markers() == []
