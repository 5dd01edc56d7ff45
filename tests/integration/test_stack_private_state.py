"""A state folder the postgres OS user cannot reach (a clone under /root, as in CI).

PostgreSQL's home then lives under the data root with a symlink from the state
folder; `down --purge` removes both. Runs a second, throwaway cluster on a free port.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import psycopg
import pytest

from base.errors import ConfigError
from base.settings import ServiceSettings
from labstream.stack import control, postgres
from labstream.stack.runas import pg_user_can_reach
from labstream.stack.settings import StackSettings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_root() -> None:
    """The stack runs PostgreSQL as the postgres OS user only when started as root
    (as CI and `make test` on a fresh machine are); not being root is a failed
    precondition, reported, never a silent skip."""
    if os.geteuid() != 0:
        pytest.fail("this test exercises the root-only path of the stack: run the suite as root")


def test_unreachable_state_dir_gets_a_symlinked_home(tmp_path: Path) -> None:
    _require_root()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)  # whatever the umask: like /root
    state_dir = private / "clone" / ".state"
    # the data root must be reachable by postgres (tmp_path itself is not)
    data_root = Path("/tmp") / f"labstream-test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    url = f"postgresql://lab:lab@127.0.0.1:{port}/lab"
    settings = ServiceSettings(state_dir=state_dir, database_url=url)
    knobs = StackSettings(pg_data_root=data_root, start_timeout_s=60)
    messages: list[str] = []
    link = state_dir / "postgres"
    try:
        control.up_postgres(control.state_paths(settings), settings, knobs, messages.append)
        home = link.resolve()
        with psycopg.connect(url) as conn:
            wal_level = conn.execute("SHOW wal_level").fetchone()
        assert not pg_user_can_reach(state_dir)
        assert link.is_symlink() and home.parent == data_root
        assert (home / "data" / "PG_VERSION").exists()
        assert wal_level == ("logical",)
        assert postgres.status_pid(control.state_paths(settings)) is not None
    finally:
        control.down(purge=True, report=messages.append, settings=settings, knobs=knobs)
        shutil.rmtree(data_root, ignore_errors=True)
    assert not link.exists() and not link.is_symlink()
    assert not home.exists()
    assert "stopped PostgreSQL" in messages


def test_unreachable_data_root_is_a_clear_error(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    settings = ServiceSettings(state_dir=private / ".state")
    paths = control.state_paths(settings)
    with pytest.raises(ConfigError, match="LABSTREAM_STACK_PG_DATA_ROOT") as caught:
        postgres.prepare_home(paths, private / "also-private")
    assert "cannot reach" in caught.value.message


def test_orphaned_home_of_a_deleted_state_dir_is_not_reused(tmp_path: Path) -> None:
    _require_root()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    data_root = Path("/tmp") / f"labstream-test-{uuid.uuid4().hex[:8]}"
    paths = control.state_paths(ServiceSettings(state_dir=private / ".state"))
    try:
        first = postgres.prepare_home(paths, data_root)
        (first / "leftover").write_text("from an earlier clone")
        # the clone is deleted without `down --purge`, then cloned again at the same path
        shutil.rmtree(paths.state_dir)
        second = postgres.prepare_home(paths, data_root)
        assert second == first
        assert not (second / "leftover").exists()
        assert paths.pg_link.is_symlink()
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
