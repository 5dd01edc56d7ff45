"""Start to streaming: how long `labstream cdc run` takes from exec to its `streaming` line.

The connector resumes an existing slot (the common restart: deploy, crash, reschedule),
so the figure is process start-up (imports, settings), connecting, the publication, Kafka
clients, topics and starting replication; no snapshot. Each run is a fresh process; the
median of `--runs` is printed. `--code DIR` runs another checkout's code (for example the
previous main, `git archive <commit> | tar -x -C DIR`) with this venv, interleaved with
this worktree's `labstream cdc run` (the venv's console script), so both see the same
machine load.

    .venv/bin/python bench/cdc_startup.py --runs 9
    .venv/bin/python bench/cdc_startup.py --runs 9 --code /tmp/main-src
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from base.settings import service_settings  # noqa: E402

# `labstream cdc run` from the checkout given as argv[1]: the venv's editable install
# would otherwise win over PYTHONPATH and always run this worktree's code
LAUNCH = """import sys
code = sys.argv[1]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
sys.path.insert(0, code)
sys.argv = ["labstream", "cdc", "run"]
from labstream.cli import main
main()
"""


def _env(name: str, code: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "LABSTREAM_CDC_NAME": name, "LABSTREAM_CDC_SLOT_NAME": name,
        "LABSTREAM_CDC_PUBLICATION": name, "LABSTREAM_CDC_TOPIC_PREFIX": name,
        "LABSTREAM_CDC_TABLE_INCLUDE_LIST": rf"public\.{name}",
        "LABSTREAM_CDC_SERIALIZER": "json", "LABSTREAM_LOG_LEVEL": "INFO",
    })
    return env


def time_to_streaming(name: str, code: Path | None, timeout: float = 60.0) -> float:
    """Seconds from spawning `labstream cdc run` to its `streaming` log line."""
    started = time.monotonic()
    # alone: the real command; side by side: both checkouts through the same launcher
    command = [str(Path(sys.executable).parent / "labstream"), "cdc", "run"] if code is None \
        else [sys.executable, "-c", LAUNCH, str(code)]
    proc = subprocess.Popen(command,
                            env=_env(name, code), cwd=code or REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    seen = b""
    try:
        while time.monotonic() - started < timeout:
            if selector.select(timeout=0.5):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
                if b"streaming" in seen:
                    return time.monotonic() - started
        raise RuntimeError(f"no 'streaming' line within {timeout}s:\n{seen.decode()[-2000:]}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--code", type=Path, help="also time this checkout, interleaved")
    args = parser.parse_args()
    database_url = service_settings().database_url
    name = f"bench_start_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{name} (id bigserial PRIMARY KEY, note text)")
    results: dict[str, list[float]] = {"this": [], "other": []}
    try:
        time_to_streaming(name, None)  # creates the slot (snapshot of an empty table)
        for _ in range(args.runs):
            results["this"].append(time_to_streaming(name, REPO if args.code else None))
            if args.code is not None:
                results["other"].append(time_to_streaming(name, args.code))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name LIKE %s AND NOT active", (name + "%",))
            conn.execute(f"DROP PUBLICATION IF EXISTS {name}")
            conn.execute("DELETE FROM labstream.connector_offsets WHERE connector_name = %s",
                         (name,))
            conn.execute(f"DROP TABLE IF EXISTS public.{name}")
    for label, values in results.items():
        if values:
            print(f"{label}: median {statistics.median(values):.2f} s  "
                  f"runs {' '.join(f'{v:.2f}' for v in values)}")


if __name__ == "__main__":
    main()
