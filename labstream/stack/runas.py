"""Run PostgreSQL's tools as the `postgres` OS user when we are root (it refuses root)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

PG_OS_USER = "postgres"


def is_root() -> bool:
    return os.geteuid() == 0


def pg_os_user() -> str:
    return PG_OS_USER if is_root() else getpass.getuser()


def as_pg_user(argv: Sequence[str]) -> list[str]:
    if not is_root():
        return list(argv)
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", PG_OS_USER, "--", *argv]


def run_as_pg(
    argv: Sequence[str], *, cwd: Path, input_text: str | None = None, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        as_pg_user(argv),
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        start_new_session=True,
    )


def pg_user_can_reach(path: Path) -> bool:
    """Can the postgres OS user traverse every folder down to `path`?"""
    if not is_root():
        return True
    result = subprocess.run(
        as_pg_user(["test", "-x", str(path)]), capture_output=True, check=False, cwd="/"
    )
    return result.returncode == 0


def give_to_pg_user(path: Path) -> None:
    if is_root():
        shutil.chown(path, PG_OS_USER, PG_OS_USER)
