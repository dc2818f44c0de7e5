"""Acknowledgements first: work after an ack waits while other acks are in flight, but never for long."""

from __future__ import annotations

import asyncio

import pytest

from bot.acks import AcksFirst


async def test_with_no_ack_in_flight_work_starts_at_once():
    acks = AcksFirst(max_wait_s=10)
    await asyncio.wait_for(acks.settled(), 0.5)


async def test_work_waits_until_every_ack_in_flight_has_landed():
    acks = AcksFirst(max_wait_s=10)
    first_landed, second_landed = asyncio.Event(), asyncio.Event()

    async def ack(landed: asyncio.Event) -> None:
        async with acks.acknowledging():
            await landed.wait()

    acking = [asyncio.create_task(ack(first_landed)), asyncio.create_task(ack(second_landed))]
    await asyncio.sleep(0)
    work = asyncio.create_task(acks.settled())
    first_landed.set()
    await asyncio.sleep(0.05)
    assert not work.done()
    second_landed.set()
    await asyncio.wait_for(work, 0.5)
    await asyncio.gather(*acking)


async def test_a_failed_ack_counts_as_landed():
    acks = AcksFirst(max_wait_s=10)
    with pytest.raises(RuntimeError):
        async with acks.acknowledging():
            raise RuntimeError("Discord refused the ack")
    await asyncio.wait_for(acks.settled(), 0.5)


async def test_a_stream_of_acks_holds_work_back_no_longer_than_the_limit():
    acks = AcksFirst(max_wait_s=0.05)
    never = asyncio.Event()

    async def stuck_ack() -> None:
        async with acks.acknowledging():
            await never.wait()

    stuck = asyncio.create_task(stuck_ack())
    await asyncio.sleep(0)
    await asyncio.wait_for(acks.settled(), 1)
    stuck.cancel()
