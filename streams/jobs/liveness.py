"""One connection per runner that holds the liveness lock of every job the runner handles.

A session-level advisory lock per job (`JOB_LOCK_CLASS`, hashtext(job id)) is held
from the moment a run is claimed until its final status is written. When the
worker dies, PostgreSQL ends the session and frees every lock at once; that is how
`reconcile()` on any worker tells an orphaned job from a running one. Keeping all
locks on one connection means a worker with hundreds of queued jobs still uses
one connection for liveness, plus its small pool for the actual writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import psycopg

from streams.jobs.store import JOB_LOCK_CLASS

LOCK_SQL = "SELECT pg_advisory_lock(%s, hashtext(%s))"
UNLOCK_SQL = "SELECT pg_advisory_unlock(%s, hashtext(%s))"


class LivenessLocks:
    """Holds job locks on one lazily opened connection (re-entrant per job id)."""

    def __init__(self, database_url: str, *, application_name: str = "labstream-jobs") -> None:
        self._database_url = database_url
        self._application_name = application_name
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._held: Counter[str] = Counter()
        self._mutex = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(
                self._database_url, autocommit=True, application_name=self._application_name
            )
            # a new session holds nothing: take back the locks of the jobs still ours
            for job_id, count in self._held.items():
                for _ in range(count):
                    await self._conn.execute(LOCK_SQL, (JOB_LOCK_CLASS, job_id))
        return self._conn

    async def hold(self, job_id: str) -> None:
        """Lock `job_id` for this runner; waits while another session holds it."""
        async with self._mutex:
            conn = await self._connection()
            await conn.execute(LOCK_SQL, (JOB_LOCK_CLASS, job_id))
            self._held[job_id] += 1

    async def release(self, job_id: str) -> None:
        """Give one hold of `job_id` back (never raises: a lost session released it already)."""
        async with self._mutex:
            if self._held[job_id] <= 0:
                return
            self._held[job_id] -= 1
            if self._held[job_id] == 0:
                del self._held[job_id]
            if self._conn is not None and not self._conn.closed:
                with contextlib.suppress(psycopg.Error):
                    await self._conn.execute(UNLOCK_SQL, (JOB_LOCK_CLASS, job_id))

    @property
    def held(self) -> dict[str, int]:
        return dict(self._held)

    async def close(self) -> None:
        async with self._mutex:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
