"""Per-user limits and the fair global queue: who runs next, what positions members are told."""

from __future__ import annotations

import asyncio

import pytest

from commands.queue import FairQueue, LimitReached, QueueLimits
from gpu_service.errors import GpuBusy


def granted(tickets):
    return [t for t in tickets if t.running]


async def test_a_request_within_the_limits_runs_at_once():
    queue = FairQueue(QueueLimits(concurrency=2))
    ticket = queue.reserve("ana")
    await asyncio.wait_for(ticket.wait_turn(), 1)
    assert ticket.running and ticket.position == 0


async def test_over_the_per_user_limit_is_refused_with_the_limits_named():
    queue = FairQueue(QueueLimits(max_running_per_user=1, max_waiting_per_user=2), noun="/qwerty requests")
    for _ in range(3):
        queue.reserve("ana")
    with pytest.raises(LimitReached, match=r"3 /qwerty requests in progress.*1 running and 2 waiting"):
        queue.reserve("ana")
    queue.reserve("bob")  # others are not affected


async def test_released_places_can_be_taken_again():
    queue = FairQueue(QueueLimits(max_running_per_user=1, max_waiting_per_user=0))
    first = queue.reserve("ana")
    with pytest.raises(LimitReached):
        queue.reserve("ana")
    first.release()
    first.release()  # idempotent: must not free someone else's slot
    assert queue.reserve("ana").running
    assert queue.running_count == 1


async def test_one_user_runs_at_most_max_running_even_with_free_slots():
    queue = FairQueue(QueueLimits(max_running_per_user=1, max_waiting_per_user=3, concurrency=4))
    tickets = [queue.reserve("ana") for _ in range(3)]
    assert len(granted(tickets)) == 1
    assert [t.position for t in tickets[1:]] == [1, 2]


async def test_round_robin_serves_users_served_longest_ago_first():
    """ana queued three before bob and cara asked: bob and cara still run before ana's second."""
    queue = FairQueue(QueueLimits(max_running_per_user=1, max_waiting_per_user=3, concurrency=1))
    a1, a2, a3 = (queue.reserve("ana") for _ in range(3))
    b1 = queue.reserve("bob")
    c1 = queue.reserve("cara")
    assert a1.running
    assert [t.position for t in (b1, c1, a2, a3)] == [1, 2, 3, 4]
    order = []
    for _ in range(5):
        (running,) = granted([a1, a2, a3, b1, c1])
        order.append(running)
        running.release()
    assert order == [a1, b1, c1, a2, a3]


async def test_waiting_members_are_told_their_new_position_as_the_queue_moves():
    queue = FairQueue(QueueLimits(max_waiting_per_user=3, concurrency=1))
    first = queue.reserve("ana")
    waiting = queue.reserve("bob")
    behind = queue.reserve("cara")
    seen = []
    task = asyncio.create_task(behind.wait_turn(seen.append))
    await asyncio.sleep(0)
    first.release()
    await asyncio.sleep(0)
    waiting.release()
    await asyncio.wait_for(task, 1)
    assert seen == [2, 1] and behind.running


async def test_a_cancelled_waiter_gives_its_place_back():
    queue = FairQueue(QueueLimits(max_waiting_per_user=3, concurrency=1))
    queue.reserve("ana")
    waiting = queue.reserve("bob")
    last = queue.reserve("cara")
    task = asyncio.create_task(waiting.wait_turn())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queue.in_flight("bob") == 0 and last.position == 1


async def test_a_wait_longer_than_the_limit_is_given_up_as_busy():
    queue = FairQueue(QueueLimits(concurrency=1, max_wait_s=0.05))
    queue.reserve("ana")
    stuck = queue.reserve("bob")
    with pytest.raises(GpuBusy, match="did not move"):
        await stuck.wait_turn()
    assert queue.waiting_count == 0


async def test_a_slot_freed_by_a_running_request_goes_to_the_next_in_line():
    queue = FairQueue(QueueLimits(concurrency=2))
    running = [queue.reserve(user) for user in ("ana", "bob")]
    waiting = queue.reserve("cara")
    assert not waiting.running
    async with running[0]:
        pass
    assert waiting.running and queue.running_count == 2
