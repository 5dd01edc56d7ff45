"""Chain audit, the long version (issue 12): a burst of rule-matching changes through the
worker and its job runner while the worker is SIGKILLed at random moments, SIGTERMed
once, and PostgreSQL and Kafka are restarted once each; then it prints the counts.

    .venv/bin/python bench/chain_audit.py --events 600 --kills 10 --seed 1

What is counted and why: tests/integration/chain_audit.py (shared with the short
version, tests/integration/test_chain_audit.py). Exit status 1 when a count is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

from chain_audit import WORKER_ENV, Audit  # noqa: E402
from streams_harness import WorkerHarness  # noqa: E402

from base.settings import service_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    name = f"audit-{uuid.uuid4().hex[:8]}"
    settings = service_settings()
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks"
        marks.mkdir()
        os.environ.update(WORKER_ENV)
        harness = WorkerHarness(name, settings.kafka_bootstrap_servers, Path(tmp),
                                launch_jobs=True, extra_env=WORKER_ENV)
        audit = Audit(harness, settings.database_url, marks, events=args.events,
                      kills=args.kills, seed=args.seed)
        try:
            result = audit.run()
        finally:
            harness.stop_all()
            audit.cleanup()
    print(json.dumps({"command": " ".join(sys.argv), "events": args.events,
                      "kills": args.kills, "seed": args.seed}))
    print("\n".join(result.lines()))
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
