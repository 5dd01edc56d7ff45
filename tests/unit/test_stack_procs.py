"""Pid files and stopping exactly the process we started."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from labstream.stack import procs


def _sleeper(tmp_path: Path, marker: str, *, ignore_term: bool = False) -> int:
    # with the trap, the shell says when it is installed (the test waits for that file)
    trap = f"trap '' TERM; : > trapped-{marker}; " if ignore_term else ""
    # the marker rides in argv so the pid file check can see it
    script = f"{trap}sleep 60 & wait; : {marker}"
    return procs.spawn_detached(
        ["/bin/sh", "-c", script], log_path=tmp_path / "out.log", cwd=tmp_path
    )


def test_pid_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "pids" / "x.pid"
    procs.write_pid(path, 1234, "kafka.Kafka /s/server.properties")
    assert procs.read_pid(path) == procs.PidRecord(1234, "kafka.Kafka /s/server.properties")


def test_missing_or_garbled_pid_file_reads_as_none(tmp_path: Path) -> None:
    assert procs.read_pid(tmp_path / "none.pid") is None
    garbled = tmp_path / "bad.pid"
    garbled.write_text("not a pid\n")
    assert procs.read_pid(garbled) is None


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "self.pid"
    procs.write_pid(path, os.getpid(), "kafka.Kafka /nowhere/server.properties")
    assert procs.live_pid(path) is None
    procs.write_pid(path, os.getpid(), Path(sys.executable).name)
    assert procs.live_pid(path) == os.getpid()


def test_dead_pid_is_not_running(tmp_path: Path) -> None:
    pid = _sleeper(tmp_path, "marker-dead")
    os.kill(pid, 9)
    assert procs.wait_gone(pid, 5)
    assert not procs.is_running(procs.PidRecord(pid, "marker-dead"))
    assert not procs.pid_alive(pid)


def test_terminate_stops_the_process_and_its_children(tmp_path: Path) -> None:
    pid = _sleeper(tmp_path, "marker-term")
    record = procs.PidRecord(pid, "marker-term")
    assert procs.is_running(record)
    children = _children(pid)
    assert procs.terminate(record, grace_s=5)
    assert not procs.pid_alive(pid)
    assert children and not any(procs.pid_alive(child) for child in children)


def test_terminate_kills_what_ignores_term(tmp_path: Path) -> None:
    pid = _sleeper(tmp_path, "marker-stubborn", ignore_term=True)
    record = procs.PidRecord(pid, "marker-stubborn")
    deadline = time.monotonic() + 10
    while not (tmp_path / "trapped-marker-stubborn").exists():  # its trap is installed
        assert time.monotonic() < deadline, "the shell never installed its trap"
        time.sleep(0.01)
    started = time.monotonic()
    assert procs.terminate(record, grace_s=0.5)
    assert not procs.pid_alive(pid)
    assert time.monotonic() - started < 5


def test_terminate_leaves_a_process_that_is_not_ours(tmp_path: Path) -> None:
    assert not procs.terminate(procs.PidRecord(os.getpid(), "not-this-process-marker"))


def test_tail_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert procs.tail_lines(log, 3) == "line 97\nline 98\nline 99"
    assert procs.tail_lines(tmp_path / "missing.log") == ""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    deadline = time.monotonic() + 3
    while not found and time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
        time.sleep(0.05)
    return found


def test_exclusive_makes_a_second_holder_wait(tmp_path: Path) -> None:
    lock = tmp_path / "stack.lock"
    events: list[str] = []

    def second() -> None:
        with procs.exclusive(lock):
            events.append("second")

    with procs.exclusive(lock):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        events.append("first done")
    thread.join(timeout=5)
    assert events == ["first done", "second"]
