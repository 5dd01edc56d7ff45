"""A job runner as its own process, for tests that SIGKILL or SIGTERM it (not a test module).

Settings come from LABSTREAM_JOBS_* in the environment. Prints `ready <owner>` once it
claims; on SIGTERM it stops the way a worker does (`aclose()`: grace, then hand back).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from streams.jobs import JobRunner


async def main() -> None:
    runner = JobRunner()
    await runner.start()
    print(f"ready {runner.owner}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.aclose()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
