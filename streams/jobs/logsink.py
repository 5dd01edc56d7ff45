"""Every line a job writes, into `job_log_lines`, in order, in batches.

One INSERT per batch (`executemany`, pipelined by psycopg) when `batch_lines`
lines are waiting or the oldest waiting line is `flush_s` old, whichever comes
first, so a chatty job costs few round trips and a quiet one is still visible
within a fraction of a second. A failed insert is logged and its batch dropped
(counted in `dropped`): the job's output must never stop the job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg

from base.logs import kv
from streams.jobs.launcher import LogLine

log = logging.getLogger(__name__)

INSERT_LINES = (
    "INSERT INTO public.job_log_lines (job_id, seq, stream, line, trace_id) "
    "VALUES (%s, %s, %s, %s, %s)"
)
TRUNCATED = " …[truncated]"


def clean_line(line: str, max_chars: int) -> str:
    # PostgreSQL text cannot hold NUL
    line = line.replace("\x00", "\ufffd")
    if len(line) > max_chars:
        line = line[: max_chars - len(TRUNCATED)] + TRUNCATED
    return line


class LogSink:
    """Writes one job attempt's lines, numbering them from `first_seq`."""

    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]],
        *,
        job_id: str,
        trace_id: str | None,
        first_seq: int,
        batch_lines: int = 200,
        flush_s: float = 0.25,
        max_chars: int = 16_384,
    ) -> None:
        self._connection = connection  # e.g. a pool's `connection`: one per batch
        self._job_id = job_id
        self._trace_id = trace_id
        self._next_seq = first_seq
        self._batch_lines = batch_lines
        self._flush_s = flush_s
        self._max_chars = max_chars
        self._pending: list[tuple[str, int, str, str, str | None]] = []
        self._oldest_pending_at = 0.0
        self.written = 0
        self.dropped = 0

    @property
    def job_id(self) -> str:
        return self._job_id

    def add(self, stream: str, line: str) -> None:
        if not self._pending:
            self._oldest_pending_at = time.monotonic()
        self._pending.append(
            (
                self._job_id,
                self._next_seq,
                stream,
                clean_line(line, self._max_chars),
                self._trace_id,
            )
        )
        self._next_seq += 1

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            async with self._connection() as conn, conn.cursor() as cursor:
                await cursor.executemany(INSERT_LINES, batch)
            self.written += len(batch)
        except psycopg.Error as exc:  # includes the pool's PoolTimeout
            self.dropped += len(batch)
            kv(
                log,
                "warning",
                "job log lines dropped",
                job_id=self._job_id,
                lines=len(batch),
                error=str(exc).strip().splitlines()[0] if str(exc) else "",
            )

    async def consume(self, lines: AsyncIterator[LogLine]) -> None:
        """Write every line of `lines` until it ends, flushing by size and age."""
        iterator = aiter(lines)
        next_line: asyncio.Future[LogLine] | None = None
        try:
            while True:
                if next_line is None:
                    next_line = asyncio.ensure_future(anext(iterator))
                timeout = None
                if self._pending:
                    timeout = max(0.0, self._oldest_pending_at + self._flush_s - time.monotonic())
                done, _ = await asyncio.wait({next_line}, timeout=timeout)
                if not done:
                    await self.flush()
                    continue
                try:
                    stream, line = next_line.result()
                except StopAsyncIteration:
                    break
                finally:
                    next_line = None
                self.add(stream, line)
                if len(self._pending) >= self._batch_lines:
                    await self.flush()
        finally:
            if next_line is not None:
                next_line.cancel()
            await self.flush()
