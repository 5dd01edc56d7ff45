"""Find and kill what is left of an abandoned attempt's local processes (Linux /proc).

A local job runs in its own process group with LABSTREAM_JOB_ID and
LABSTREAM_JOB_ATTEMPT in its environment, inherited by everything it forks. When its
runner dies, the job's row keeps (host, pid, start time); a runner taking the job over
on the same host kills:

- the recorded pid's process group, only if that pid still has the recorded start
  time (field 22 of /proc/<pid>/stat), so a reused pid is never killed;
- every process whose environment names this job and an attempt <= the abandoned
  one: this finds a process started just before its runner died, before its pid was
  recorded, and children that left the group.

Processes of another user are invisible here (their /proc/<pid>/environ is not
readable); jobs run as the worker's user, so theirs are not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

PROC = Path("/proc")


def host_name() -> str:
    return socket.gethostname()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)


def is_zombie(pid: int) -> bool:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def job_processes(job_id: str, max_attempt: int) -> list[int]:
    """Live pids whose environment names `job_id` with an attempt <= `max_attempt`."""
    wanted = f"LABSTREAM_JOB_ID={job_id}".encode()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        variables = environ.split(b"\0")
        if wanted not in variables:
            continue
        attempt = next((v.split(b"=", 1)[1] for v in variables
                        if v.startswith(b"LABSTREAM_JOB_ATTEMPT=")), b"0")
        if attempt.isdigit() and int(attempt) <= max_attempt and not is_zombie(int(entry.name)):
            found.append(int(entry.name))
    return found


def _kill_group_of(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        group = os.getpgid(pid)
        if group != os.getpgrp():  # a job runs in its own group; never kill the runner's
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def kill_attempt(job_id: str, attempt: int, *, pid: int | None, start: int | None) -> list[int]:
    """SIGKILL the abandoned attempt's process groups on this host; returns the pids hit."""
    killed = []
    if pid is not None and start is not None and start_ticks(pid) == start:
        _kill_group_of(pid)
        killed.append(pid)
    for other in job_processes(job_id, attempt):
        if other == os.getpid():
            continue  # never ourselves (a runner started by a job of the same id)
        _kill_group_of(other)
        killed.append(other)
    return killed
