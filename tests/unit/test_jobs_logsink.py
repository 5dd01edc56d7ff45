"""LogSink batching: by size, by age, in seq order, NUL-safe, never stopping the job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from streams.jobs.launcher import LogLine
from streams.jobs.logsink import LogSink, clean_line


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    async def __aenter__(self) -> FakeCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.conn.fail:
            raise psycopg.OperationalError("server closed the connection")
        self.conn.batches.append((asyncio.get_running_loop().time(), list(rows)))


class FakeConnection:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[float, list[tuple[Any, ...]]]] = []
        self.fail = fail

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)


def sink(conn: FakeConnection, **options: Any) -> LogSink:
    @asynccontextmanager
    async def connection() -> AsyncIterator[Any]:
        yield conn  # like a pool's `connection()`: one per batch

    return LogSink(connection, job_id="job-1", trace_id="t" * 32, first_seq=5, **options)


async def burst(count: int) -> AsyncIterator[LogLine]:
    for index in range(count):
        yield ("stdout" if index % 2 else "stderr"), f"line {index}"


def test_batches_by_size_and_numbers_lines_from_first_seq():
    conn = FakeConnection()
    target = sink(conn, batch_lines=100, flush_s=10)
    asyncio.run(target.consume(burst(250)))
    sizes = [len(rows) for _, rows in conn.batches]
    assert sizes == [100, 100, 50]
    rows = [row for _, batch in conn.batches for row in batch]
    assert [row[1] for row in rows] == list(range(5, 255))
    assert rows[0] == ("job-1", 5, "stderr", "line 0", "t" * 32)
    assert target.written == 250 and target.dropped == 0


def test_a_quiet_job_line_is_written_within_flush_s():
    conn = FakeConnection()

    async def slow() -> AsyncIterator[LogLine]:
        yield "stdout", "first"
        await asyncio.sleep(1.0)
        yield "stdout", "second"

    async def scenario() -> float:
        started = asyncio.get_running_loop().time()
        await sink(conn, batch_lines=100, flush_s=0.1).consume(slow())
        return started

    started = asyncio.run(scenario())
    (first_at, first_rows), (_, second_rows) = conn.batches
    assert [row[3] for row in first_rows] == ["first"]
    assert first_at - started < 0.5  # not held back until the job wrote more
    assert [row[3] for row in second_rows] == ["second"]


def test_failed_insert_is_counted_not_raised():
    conn = FakeConnection(fail=True)
    target = sink(conn, batch_lines=10, flush_s=10)
    asyncio.run(target.consume(burst(25)))
    assert target.dropped == 25 and target.written == 0


def test_clean_line_removes_nul_and_truncates():
    assert clean_line("a\x00b", 100) == "a\ufffdb"
    cut = clean_line("x" * 500, 100)
    assert len(cut) == 100 and cut.endswith("[truncated]")
