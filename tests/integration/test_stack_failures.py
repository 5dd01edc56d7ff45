"""When a service cannot start, `up` says why: the error carries the log's own words."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from base.settings import ServiceSettings, service_settings
from labstream.stack import control, kafka, postgres
from labstream.stack.exceptions import ReplicationRefused, StackError
from labstream.stack.paths import StatePaths
from labstream.stack.settings import StackSettings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def side_state() -> Iterator[StatePaths]:
    """A throwaway state folder that the postgres OS user can reach."""
    state = Path("/tmp") / f"labstream-side-{uuid.uuid4().hex[:8]}"
    state.mkdir(mode=0o755)
    yield StatePaths(state)
    shutil.rmtree(state, ignore_errors=True)


def test_kafka_that_exits_at_start_fails_with_its_log(side_state: StatePaths) -> None:
    main_libs = StatePaths(service_settings().state_dir.resolve()).kafka_libs
    side_state.kafka.mkdir(parents=True)
    side_state.kafka_libs.symlink_to(main_libs, target_is_directory=True)
    target = kafka.KafkaTarget("127.0.0.1", _free_port(), _free_port())
    kafka.write_config(side_state, target)
    java = kafka.ensure_java()
    # storage never formatted: Kafka refuses to start and exits
    kafka.start(side_state, java, target, heap="256m")
    try:
        with pytest.raises(StackError) as caught:
            kafka.wait_ready(side_state, target.bootstrap, timeout_s=60)
    finally:
        kafka.stop(side_state)
    assert "Kafka exited while starting" in caught.value.message
    assert "meta.properties" in caught.value.message  # the broker's own complaint
    assert caught.value.hint is not None


def test_postgres_that_cannot_start_fails_with_its_log(side_state: StatePaths) -> None:
    port = _free_port()
    settings = ServiceSettings(
        state_dir=side_state.state_dir, database_url=f"postgresql://lab:lab@127.0.0.1:{port}/lab"
    )
    target = postgres.PgTarget.from_url(settings.database_url)
    home = postgres.prepare_home(side_state, StackSettings().pg_data_root)
    bins = postgres.bin_dir(side_state)
    postgres.init_cluster(side_state, home, bins, target)
    conf = home / "data" / "labstream.conf"
    conf.write_text(conf.read_text() + "\nshared_buffers = 'lots'\n")
    try:
        with pytest.raises(StackError) as caught:
            postgres.start(side_state, home, bins, target, timeout_s=30)
    finally:
        control.down(purge=True, report=lambda message: None, settings=settings)
    assert "PostgreSQL did not start" in caught.value.message
    assert "shared_buffers" in caught.value.message


def test_postgres_without_logical_wal_is_refused(side_state: StatePaths) -> None:
    port = _free_port()
    settings = ServiceSettings(
        state_dir=side_state.state_dir, database_url=f"postgresql://lab:lab@127.0.0.1:{port}/lab"
    )
    target = postgres.PgTarget.from_url(settings.database_url)
    home = postgres.prepare_home(side_state, StackSettings().pg_data_root)
    bins = postgres.bin_dir(side_state)
    postgres.init_cluster(side_state, home, bins, target)
    conf = home / "data" / "labstream.conf"
    conf.write_text(conf.read_text().replace("wal_level = logical", "wal_level = replica"))
    try:
        postgres.start(side_state, home, bins, target, timeout_s=30)
        postgres.bootstrap_role(home, bins, target)
        with pytest.raises(ReplicationRefused) as caught:
            postgres.wait_ready(settings.database_url, side_state.pg_log, timeout_s=30)
    finally:
        control.down(purge=True, report=lambda message: None, settings=settings)
    assert "wal_level=replica" in caught.value.message
    assert ":lab@" not in caught.value.message  # no password in messages
