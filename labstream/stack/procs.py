"""Pid files and detached processes: the stack stops exactly what it started.

A pid file holds the pid and a marker (a string the process's command line must
contain), so a pid reused by an unrelated process is never taken for ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PidRecord:
    pid: int
    marker: str


def write_pid(path: Path, pid: int, marker: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n{marker}\n")
    tmp.replace(path)


def read_pid(path: Path) -> PidRecord | None:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    if not lines or not lines[0].strip().isdigit():
        return None
    return PidRecord(int(lines[0]), lines[1] if len(lines) > 1 else "")


def command_line(pid: int) -> str | None:
    """The process's argv joined by spaces, or None if it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:  # zombies and kernel threads have an empty command line
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def is_running(record: PidRecord | None) -> bool:
    if record is None:
        return False
    cmdline = command_line(record.pid)
    return cmdline is not None and record.marker in cmdline


def live_pid(path: Path) -> int | None:
    """The pid in `path` if that process still runs and is ours; else None."""
    record = read_pid(path)
    return record.pid if record is not None and is_running(record) else None


def spawn_detached(argv: Sequence[str], *, log_path: Path, cwd: Path) -> int:
    """Start argv in its own session, stdout+stderr appended to log_path; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # Popen returns while execve may still be installing the new program, when
    # /proc/<pid>/cmdline reads empty: wait for it, so pid checks see the marker
    deadline = time.monotonic() + 5.0
    while command_line(proc.pid) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.pid


def _reap(pid: int) -> None:
    # a child of this very process (tests start and stop in-process) must be reaped
    # or it stays a zombie that still "exists"
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _exists(pid: int) -> bool:
    """The process exists and is not a zombie (its command line may be empty mid-exec)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the field after the parenthesised command name, which may contain spaces
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def pid_alive(pid: int) -> bool:
    """The process exists, whatever its command line (empty for a moment during exec)."""
    return _exists(pid)


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _exists(pid):
            return True
        time.sleep(0.1)
    return not _exists(pid)


def terminate(record: PidRecord, *, grace_s: float = 20.0) -> bool:
    """TERM the process group, wait up to grace_s, then KILL. True if it was running."""
    if not is_running(record):
        return False
    _signal_group(record.pid, signal.SIGTERM)
    if not wait_gone(record.pid, grace_s):
        _signal_group(record.pid, signal.SIGKILL)
        wait_gone(record.pid, 5.0)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # we started it as a session leader, so its group holds its children too
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock: two `stack up`s at once (parallel test runs) take turns."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tail_lines(path: Path, count: int = 30) -> str:
    """The last `count` lines of a log file ('' if there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()
    return "\n".join(lines[-count:])
