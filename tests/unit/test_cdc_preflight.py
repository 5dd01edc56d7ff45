import psycopg2.errors
import pytest

from connectors.source import catalog
from connectors.source.exceptions import CdcConfigError, SlotLost, SourceDisconnected
from connectors.source.replication import _classify


class FakeCursor:
    def __init__(self, answers):
        self.answers = answers
        self.last = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        self.last = query

    def fetchone(self):
        return self.answers["wal_level" if "wal_level" in self.last else "role"]


class FakeConn:
    def __init__(self, wal_level="logical", may_replicate=True):
        self.answers = {"wal_level": (wal_level,), "role": (may_replicate, "lab")}

    def cursor(self):
        return FakeCursor(self.answers)

    def commit(self):
        pass


def test_preflight_accepts_a_ready_database():
    catalog.preflight(FakeConn())


def test_wal_level_not_logical_says_how_to_fix_it():
    with pytest.raises(CdcConfigError) as caught:
        catalog.preflight(FakeConn(wal_level="replica"))
    assert "wal_level" in caught.value.message and "'replica'" in caught.value.message
    assert "wal_level = logical" in (caught.value.hint or "")


def test_missing_replication_privilege_names_the_role_and_the_grant():
    with pytest.raises(CdcConfigError) as caught:
        catalog.preflight(FakeConn(may_replicate=False))
    assert "REPLICATION" in caught.value.message
    assert caught.value.hint == "as a superuser: ALTER ROLE lab REPLICATION;"


def test_replication_errors_are_classified():
    missing = psycopg2.errors.UndefinedObject('replication slot "x" does not exist')
    assert isinstance(_classify(missing, "x"), SlotLost)
    busy = psycopg2.errors.ObjectInUse('replication slot "x" is active for PID 7')
    assert isinstance(_classify(busy, "x"), SourceDisconnected)
    denied = psycopg2.errors.InsufficientPrivilege("must be superuser or replication role")
    assert isinstance(_classify(denied, "x"), CdcConfigError)
    # a slot created before its publication can never decode its older changes
    too_old = psycopg2.errors.UndefinedObject('publication "lab" does not exist')
    error = _classify(too_old, "x")
    assert isinstance(error, CdcConfigError) and "reset --yes" in (error.hint or "")
