"""The runner's own session: its owner lock, and LISTEN for work.

While the runner lives, this session holds a session advisory lock on the runner's
owner id; PostgreSQL frees it the moment the session ends (process killed, host
gone), which is how another runner tells a dead owner's leases from a live one's
without waiting for them to expire. The same connection LISTENs on
`labstream_jobs`, so the runner wakes when work arrives or a slot frees up. It
reconnects on its own after a PostgreSQL restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from base.logs import kv
from streams.jobs.store import CHANNEL, OWNER_LOCK_CLASS

log = logging.getLogger(__name__)
RECONNECT_S = 1.0
READY_WAIT_S = 10.0


class OwnerSession:
    def __init__(self, database_url: str, owner: str, *, on_notify: Callable[[], None],
                 application_name: str) -> None:
        self._database_url = database_url
        self._owner = owner
        self._on_notify = on_notify
        self._application_name = application_name
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._since: float | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"owner {self._owner}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), READY_WAIT_S)

    def up_for(self) -> float:
        """Seconds since the owner lock was last (re)taken; 0 while disconnected."""
        if self._since is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._since

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._database_url, autocommit=True, application_name=self._application_name)
                await self._conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                                         (OWNER_LOCK_CLASS, self._owner))
                await self._conn.execute(f"LISTEN {CHANNEL}")
                self._since = loop.time()
                self._ready.set()
                self._on_notify()  # work may have arrived while we were away
                async for _ in self._conn.notifies():
                    self._on_notify()
            except psycopg.Error as exc:
                kv(log, "warning", "job runner session lost; reconnecting", error=repr(exc))
            self._since = None
            await self._close_conn()
            await asyncio.sleep(RECONNECT_S)

    async def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close_conn()
        self._since = None
