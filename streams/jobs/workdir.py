"""A fresh private directory per job attempt, removed when the attempt ends.

Two jobs never share a directory (so two tenants never do): each gets its own
`mkdtemp` (mode 0700) named after the tenant and the job, for whoever reads
`ps` or `ls /tmp` during an incident.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:40] or "x"


@asynccontextmanager
async def job_workdir(tenant_id: str, job_id: str, root: Path | None = None) -> AsyncIterator[Path]:
    """Create the job's temp dir; remove it (and all it holds) afterwards, off the event loop."""
    path = Path(
        tempfile.mkdtemp(prefix=f"labstream-job-{_slug(tenant_id)}-{_slug(job_id)}-", dir=root)
    )
    try:
        yield path
    finally:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: shutil.rmtree(path, ignore_errors=True)
        )
