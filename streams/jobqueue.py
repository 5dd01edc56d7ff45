"""Queue fired jobs once their decisions are stored, in order, many records per transaction.

Awaiting each record's broker acknowledgement and then its own INSERT, record after
record, held the agent to one round trip to Kafka plus one to PostgreSQL per firing
record (a 50 changes/s flood then backed the partition up for minutes). Instead the
agent hands `(the record's deliveries, its job requests)` to `JobQueuer.add` and goes
on; one task takes the records in arrival order, waits for the first one's deliveries,
takes every following record whose deliveries are already done, and queues all their
jobs with one `submit_many` (one transaction), retried until stored. `add` returns a
future that the agent adds to the record's deliveries, so the record is acked (its
offset committed) only once its jobs are queued. A record whose decisions could not be
stored queues nothing and fails its future: the agent stops acking (streams.acks).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from base.logs import kv

log = logging.getLogger(__name__)
RETRY_S = 0.2
RETRY_MAX_S = 5.0
MAX_BATCH = 500


@dataclass
class _Pending:
    deliveries: list[asyncio.Future[Any]]
    requests: list[Any]
    done: asyncio.Future[None]


class DecisionNotStored(Exception):
    """A decision of this record was not stored in Kafka: its jobs were not queued."""


class JobQueuer:
    def __init__(self, submit_many: Callable[[Sequence[Any]], Awaitable[Any]]) -> None:
        self._submit_many = submit_many
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def add(self, deliveries: Sequence[Awaitable[Any]],
            requests: list[Any]) -> asyncio.Future[None]:
        """Queue `requests` after `deliveries` complete; the future is done once they are."""
        loop = asyncio.get_running_loop()
        item = _Pending([asyncio.ensure_future(d) for d in deliveries], requests,
                        loop.create_future())
        self._pending.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="queue fired jobs")
        self._wake.set()
        return item.done

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self._pending[0]
            if first.deliveries:
                await asyncio.wait(first.deliveries)
            batch = [self._pending.popleft()]
            while (self._pending and len(batch) < MAX_BATCH
                   and all(d.done() for d in self._pending[0].deliveries)):
                batch.append(self._pending.popleft())
            await self._queue(batch)

    async def _queue(self, batch: list[_Pending]) -> None:
        stored: list[_Pending] = []
        failed: list[_Pending] = []
        for item in batch:
            error = next((d.exception() for d in item.deliveries
                          if not d.cancelled() and d.exception() is not None), None)
            (failed if error is not None else stored).append(item)
        for item in failed:
            kv(log, "error", "decision not stored in Kafka; its jobs are not queued",
               jobs=len(item.requests))
            item.done.set_exception(DecisionNotStored("a decision was not stored"))
        requests = [request for item in stored for request in item.requests]
        delay = RETRY_S
        while requests:
            try:
                await self._submit_many(requests)
                break
            except Exception as exc:
                kv(log, "error", "jobs not queued; retrying (their records are not acked "
                   "meanwhile)", jobs=len(requests), retry_in_s=delay,
                   error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        self.batches += 1
        for item in stored:
            item.done.set_result(None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
