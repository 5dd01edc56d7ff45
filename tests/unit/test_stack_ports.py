"""Port-in-use detection and the error that names the port, its holder and the fix."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from labstream.stack.exceptions import PortTaken
from labstream.stack.ports import (
    Listener,
    ensure_port_free,
    find_listener,
    listening_inodes,
    parse_port_list,
    port_in_use,
    reserve_ports,
)


@pytest.fixture
def listening_socket() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_port_in_use_sees_a_listener(listening_socket: int) -> None:
    assert port_in_use("127.0.0.1", listening_socket)


def test_free_port_is_not_in_use() -> None:
    assert not port_in_use("127.0.0.1", _free_port())


def test_find_listener_names_this_process(listening_socket: int) -> None:
    listener = find_listener(listening_socket)
    assert listener is not None
    assert listener.pid == os.getpid()


def test_listening_inodes_parses_proc_net_tcp(tmp_path: Path) -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when  uid  inode\n"
    rest = "00000000:00000000 00:00000000 00000000   101        0"
    # 0xD834 = 55348; state 0A = LISTEN, 01 = ESTABLISHED
    rows = [
        f"   0: 0100007F:D834 00000000:0000 0A {rest} 4242 1",
        f"   1: 0100007F:D834 0100007F:9C40 01 {rest} 4343 1",
        f"   2: 0100007F:1F90 00000000:0000 0A {rest} 4444 1",
    ]
    (tmp_path / "tcp").write_text(header + "\n".join(rows) + "\n")
    assert listening_inodes(0xD834, tmp_path) == {"4242"}
    assert listening_inodes(1, tmp_path) == set()


def test_port_taken_error_names_port_holder_and_env_var(listening_socket: int) -> None:
    with pytest.raises(PortTaken) as caught:
        ensure_port_free("Kafka", "127.0.0.1", listening_socket, env_var="LABSTREAM_X_PORT")
    error = caught.value
    assert f"127.0.0.1:{listening_socket}" in error.message
    assert f"pid {os.getpid()}" in error.message
    assert error.hint is not None and "LABSTREAM_X_PORT" in error.hint
    assert error.exit_code == 2


def test_port_taken_error_when_holder_is_invisible(
    listening_socket: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("labstream.stack.ports.find_listener", lambda port: None)
    with pytest.raises(PortTaken, match="held by a connection, not a server") as caught:
        ensure_port_free("PostgreSQL", "127.0.0.1", listening_socket, env_var="E", wait_s=0)
    assert caught.value.hint is not None and "try again in a minute" in caught.value.hint


def test_port_held_by_a_connection_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([True, True, False])
    monkeypatch.setattr("labstream.stack.ports.port_in_use", lambda host, port: next(answers))
    monkeypatch.setattr("labstream.stack.ports.find_listener", lambda port: None)
    monkeypatch.setattr("labstream.stack.ports.time.sleep", lambda seconds: None)
    ensure_port_free("Kafka", "127.0.0.1", 59092, env_var="E", wait_s=60)


def test_parse_port_list() -> None:
    assert parse_port_list("") == set()
    assert parse_port_list("55432,59092-59094\n") == {55432, 59092, 59093, 59094}


def test_reserve_ports_merges_with_what_is_there(tmp_path: Path) -> None:
    reserved = tmp_path / "ip_local_reserved_ports"
    reserved.write_text("8000-8002\n")
    assert reserve_ports([8001, 55432, 59092], reserved) == [55432, 59092]
    assert parse_port_list(reserved.read_text()) == {8000, 8001, 8002, 55432, 59092}
    assert reserve_ports([55432], reserved) == []


def test_reserve_ports_without_the_file_does_nothing(tmp_path: Path) -> None:
    assert reserve_ports([55432], tmp_path / "missing") == []


def test_free_port_passes() -> None:
    ensure_port_free("PostgreSQL", "127.0.0.1", _free_port(), env_var="E")


def test_listener_description_is_bounded() -> None:
    described = Listener(7, "/usr/bin/java " + "-Dx=y " * 80 + "kafka.Kafka /s/server.properties")
    text = described.describe()
    assert len(text) < 140
    assert text.startswith("pid 7 (/usr/bin/java")
    assert text.endswith("kafka.Kafka /s/server.properties)")
    assert Listener(8, "sleep 5").describe() == "pid 8 (sleep 5)"
