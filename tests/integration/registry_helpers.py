"""`labstream registry serve` as a subprocess for the registry and client tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
from cdc_helpers import REPO, wait_for

LAB_TABLES = ("tenants", "experiments", "instruments", "runs", "samples", "inventory_items",
              "sensor_readings", "trigger_rules", "jobs", "job_log_lines")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def registry_server(log_path: Path, *options: str) -> Iterator[str]:
    """The registry on a free port; yields its URL once it answers; SIGTERM on exit."""
    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labstream.cli", "registry", "serve", "--port", str(port),
             *options],
            env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _answers(url), 30, "the registry to answer")
        assert proc.poll() is None, f"registry exited: {log_path.read_text()[-2000:]}"
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def copy_lab_tables(prefix: str) -> list[str]:
    """SQL making `<prefix>_<table>` for every lab table: same columns, types, checks
    and replica identity as the lab schema (migration 0001), without foreign keys."""
    statements = []
    for table in LAB_TABLES:
        copy = f"public.{prefix}_{table}"
        statements.append(f"CREATE TABLE {copy} (LIKE public.{table} INCLUDING ALL)")
        statements.append(
            f"DO $$ BEGIN IF (SELECT relreplident FROM pg_class WHERE oid = "
            f"'public.{table}'::regclass) = 'f' THEN ALTER TABLE {copy} REPLICA IDENTITY FULL;"
            f" END IF; END $$")
    return statements
