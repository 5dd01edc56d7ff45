"""Connecting to a database that is not there gives a message a human can act on."""

from __future__ import annotations

import socket

import pytest

from base.db import connect
from base.errors import ServiceUnavailable


def closed_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


def test_unreachable_database_names_masked_url_and_the_fix() -> None:
    url = f"postgresql://lab:hunter2@127.0.0.1:{closed_local_port()}/lab"
    with pytest.raises(ServiceUnavailable) as err:
        connect(url, connect_timeout=2)
    assert "postgresql://lab:***@127.0.0.1:" in err.value.message
    assert "hunter2" not in str(err.value)
    assert err.value.hint is not None and "labstream stack up" in err.value.hint
