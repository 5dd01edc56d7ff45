from __future__ import annotations

import asyncio

import pytest

from streams.acks import InOrderAcks


class Event:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def ack(self) -> None:
        self.log.append(self.name)


def test_acks_follow_arrival_order_even_when_later_deliveries_finish_first() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        acked: list[str] = []
        acks = InOrderAcks()
        first, second = loop.create_future(), loop.create_future()
        await acks.add(Event("a", acked), [first])
        await acks.add(Event("b", acked), [second])
        second.set_result("ok")
        await asyncio.sleep(0)
        assert acked == []  # b is done but a is not: no gap, nothing acked
        first.set_result("ok")
        await asyncio.sleep(0)
        return acked

    assert asyncio.run(scenario()) == ["a", "b"]


def test_record_without_outputs_is_acked_after_its_predecessors() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        acked: list[str] = []
        acks = InOrderAcks()
        slow = loop.create_future()
        await acks.add(Event("a", acked), [slow])
        await acks.add(Event("b", acked), [])
        assert acked == []
        slow.set_result(None)
        await acks.wait_all()
        return acked

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_failed_delivery_stops_all_later_acks_and_reports() -> None:
    async def scenario() -> tuple[list[str], list[BaseException]]:
        loop = asyncio.get_running_loop()
        acked: list[str] = []
        failures: list[BaseException] = []
        acks = InOrderAcks(on_failure=failures.append)
        ok, bad, later = loop.create_future(), loop.create_future(), loop.create_future()
        await acks.add(Event("a", acked), [ok])
        await acks.add(Event("b", acked), [bad])
        await acks.add(Event("c", acked), [later])
        ok.set_result(None)
        later.set_result(None)
        bad.set_exception(RuntimeError("broker gone"))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await acks.add(Event("d", acked), [])
        return acked, failures

    acked, failures = asyncio.run(scenario())
    assert acked == ["a"]
    assert [str(error) for error in failures] == ["broker gone"]


def test_backpressure_waits_for_the_oldest_record() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        acked: list[str] = []
        acks = InOrderAcks(max_in_flight=1)
        first = loop.create_future()
        await acks.add(Event("a", acked), [first])
        loop.call_later(0.01, first.set_result, None)
        await acks.add(Event("b", asked := acked), [])  # blocks until a is stored
        assert asked[0] == "a"
        return acked

    assert asyncio.run(scenario()) == ["a", "b"]
