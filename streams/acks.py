"""Ack consumed records strictly in order, once everything they produced is stored.

The agent hands each record's output deliveries (producer futures) to
`InOrderAcks.add(event, deliveries)` and moves on to the next record without
waiting for the broker. A record is acked (its offset becomes committable) only
when its own deliveries and those of every record before it have completed, so
the committed offset never passes a record whose outputs could still be lost,
and acks never leave a gap (the faust-streaming commit bug with gaps, issue
#606, needs out-of-order acks). A failed delivery stops all further acks: the
worker then stops (`on_failure`) and the records from the failed one on are
handled again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from base.logs import kv

log = logging.getLogger(__name__)


class Ackable(Protocol):
    def ack(self) -> Any: ...


class InOrderAcks:
    def __init__(self, *, max_in_flight: int = 1000,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.max_in_flight = max_in_flight
        self._on_failure = on_failure
        self._queue: deque[tuple[Ackable, list[asyncio.Future[Any]]]] = deque()
        self.failed: BaseException | None = None
        self.acked = 0

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    async def add(self, event: Ackable, deliveries: Iterable[Awaitable[Any]]) -> None:
        """Track `event`; waits only while `max_in_flight` records are unacknowledged."""
        futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(d) for d in deliveries]
        self._queue.append((event, futures))
        for future in futures:
            future.add_done_callback(lambda _: self._drain())
        self._drain()
        while len(self._queue) > self.max_in_flight and self.failed is None:
            await asyncio.wait(self._queue[0][1])
            self._drain()
        if self.failed is not None:
            raise self.failed

    async def wait_all(self) -> None:
        """Wait until every tracked record is acked (or a delivery failed)."""
        while self._queue and self.failed is None:
            await asyncio.wait(self._queue[0][1])
            self._drain()

    def _drain(self) -> None:
        while self._queue and self.failed is None:
            event, futures = self._queue[0]
            if not all(future.done() for future in futures):
                return
            error = next((future.exception() for future in futures
                          if not future.cancelled() and future.exception() is not None), None)
            if error is None and any(future.cancelled() for future in futures):
                error = asyncio.CancelledError("a delivery was cancelled")
            if error is not None:
                self.failed = error
                kv(log, "error", "an output was not stored; no further offsets are committed",
                   error=f"{type(error).__name__}: {error}")
                if self._on_failure is not None:
                    self._on_failure(error)
                return
            self._queue.popleft()
            event.ack()
            self.acked += 1
