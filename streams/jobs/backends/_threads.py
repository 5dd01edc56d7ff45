"""Bridges from blocking client libraries (docker, kubernetes, boto3) to asyncio.

Log streams and "wait until the job ends" calls block for the whole life of a
job, so they get their own daemon thread instead of a slot in the event loop's
small default executor (which a few long jobs would exhaust).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
_END = object()


def in_thread(function: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run a blocking call in a new daemon thread; its result as an asyncio future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = function()
        except BaseException as exc:
            loop.call_soon_threadsafe(deliver, None, exc)
        else:
            loop.call_soon_threadsafe(deliver, result, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


async def iterate_in_thread(iterable: Callable[[], Iterable[T]], name: str) -> AsyncIterator[T]:
    """Consume a blocking iterator in a daemon thread, yielding its items here, in order."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def target() -> None:
        try:
            for item in iterable():
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    threading.Thread(target=target, name=name, daemon=True).start()
    while True:
        item = await queue.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item  # type: ignore[misc]


class LineSplitter:
    """Bytes chunks in, complete text lines out (a line split across chunks is joined)."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return [_decode(line) for line in complete]

    def rest(self) -> list[str]:
        rest, self._partial = self._partial, b""
        return [_decode(rest)] if rest else []


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\r") else text
