"""Rendering the stack's PostgreSQL and Kafka configuration from stack/ templates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from base.settings import ServiceSettings
from labstream.stack import config
from labstream.stack.paths import MAX_SOCKET_DIR_LEN, StatePaths, socket_dir_for
from labstream.stack.postgres import PgTarget, _safe
from labstream.stack.settings import kafka_address, pg_address


def _pg_settings(text: str) -> dict[str, str]:
    pairs = re.findall(r"^(\w+)\s*=\s*(.+?)\s*(?:#.*)?$", text, flags=re.MULTILINE)
    return {key: value.strip("'") for key, value in pairs}


def test_postgres_conf_has_what_cdc_needs() -> None:
    text = config.postgres_conf(port=55432, socket_dir=Path("/x/pg"))
    values = _pg_settings(text)
    assert values["port"] == "55432"
    assert values["listen_addresses"] == "127.0.0.1"
    assert values["unix_socket_directories"] == "/x/pg"
    assert values["wal_level"] == "logical"
    assert int(values["max_replication_slots"]) >= 20
    assert int(values["max_wal_senders"]) >= 20
    assert int(values["max_connections"]) >= 200
    assert values["synchronous_commit"] == "on"
    assert "$" not in text


def test_pg_hba_allows_lab_sql_and_replication_with_scram_over_loopback_only() -> None:
    rules = [line.split() for line in config.pg_hba().splitlines() if line and line[0] != "#"]
    host_rules = [rule for rule in rules if rule[0] == "host"]
    assert ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"] in host_rules
    assert ["host", "replication", "all", "127.0.0.1/32", "scram-sha-256"] in host_rules
    assert all(rule[3] == "127.0.0.1/32" for rule in host_rules)
    assert not any(rule[-1] == "trust" for rule in rules)


def test_kafka_properties_single_node_kraft() -> None:
    props = config.parse_properties(
        config.kafka_properties(broker_port=59092, controller_port=59093, data_dir=Path("/d/k"))
    )
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:59093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:59092,CONTROLLER://127.0.0.1:59093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:59092"
    assert props["log.dirs"] == "/d/k"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_render_refuses_a_missing_placeholder(tmp_path: Path) -> None:
    template = tmp_path / "t.conf"
    template.write_text("port = $pg_port\nother = $nothing\n")
    with pytest.raises(KeyError):
        config.render(template, pg_port=1)


def test_log4j_config_writes_to_the_kafka_logs_dir() -> None:
    assert "${sys:kafka.logs.dir}/server.log" in config.kafka_log4j()


@given(st.integers(min_value=0, max_value=50))
def test_cluster_ids_are_kafka_uuids(_: int) -> None:
    cluster_id = config.new_cluster_id()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
    assert not cluster_id.startswith("-")


def test_ports_follow_the_service_urls() -> None:
    settings = ServiceSettings(
        database_url="postgresql://lab:secret@127.0.0.1:6543/lab",
        kafka_bootstrap_servers="127.0.0.1:7092,127.0.0.1:7093",
    )
    assert pg_address(settings) == ("127.0.0.1", 6543)
    assert kafka_address(settings) == ("127.0.0.1", 7092)


def test_pg_target_from_url_and_password_never_printed() -> None:
    url = "postgresql://lab:s%40cret@127.0.0.1:6543/labdb"
    assert PgTarget.from_url(url) == PgTarget("127.0.0.1", 6543, "lab", "s@cret", "labdb")
    assert "s%40cret" not in _safe(url) and ":***@" in _safe(url)


def test_socket_dir_falls_back_to_tmp_for_long_paths() -> None:
    short = Path("/work/main/.state/postgres")
    long = Path("/" + "x" * MAX_SOCKET_DIR_LEN) / "postgres"
    assert socket_dir_for(short) == short
    fallback = socket_dir_for(long)
    assert fallback.parent == Path("/tmp") and fallback == socket_dir_for(long)


def test_pg_home_outside_is_stable_per_state_dir(tmp_path: Path) -> None:
    one = StatePaths(tmp_path / "a").pg_home_outside(Path("/var/lib/labstream"))
    again = StatePaths(tmp_path / "a").pg_home_outside(Path("/var/lib/labstream"))
    other = StatePaths(tmp_path / "b").pg_home_outside(Path("/var/lib/labstream"))
    assert one == again != other
    assert one.parent == Path("/var/lib/labstream")
