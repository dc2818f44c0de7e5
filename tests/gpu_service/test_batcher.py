"""The micro-batcher: concurrent submissions share a batch; a caller giving up never stalls the others."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gpu_service.engine.batcher import MicroBatcher
from gpu_service.errors import GpuBusy


def doubling(batches: list, delay_s: float = 0.0):
    def run(items):
        batches.append(list(items))
        time.sleep(delay_s)
        return [ValueError("odd") if item == 13 else item * 2 for item in items]
    return run


def test_concurrent_submissions_share_a_batch_and_errors_stay_with_their_item():
    batches: list = []
    batcher = MicroBatcher(doubling(batches), max_batch=4, window_s=0.2)
    futures = [batcher.submit(item) for item in (1, 13, 3)]
    assert futures[0].result(5) == 2 and futures[2].result(5) == 6
    with pytest.raises(ValueError):
        futures[1].result(5)
    assert batches == [[1, 13, 3]]
    batcher.close()


async def test_a_cancelled_caller_does_not_stop_the_runner():
    batches: list = []
    batcher = MicroBatcher(doubling(batches, delay_s=0.2), max_batch=1)
    first = asyncio.wrap_future(batcher.submit(1))
    await asyncio.sleep(0.05)
    abandoned = asyncio.ensure_future(asyncio.wrap_future(batcher.submit(2)))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    assert await first == 2
    assert await asyncio.wait_for(asyncio.wrap_future(batcher.submit(3)), 5) == 6
    assert [2] not in batches  # the abandoned request was never rendered
    batcher.close()


def test_a_closed_batcher_refuses_new_work():
    batcher = MicroBatcher(doubling([]))
    assert batcher.submit(1).result(5) == 2
    batcher.close()
    with pytest.raises(GpuBusy):
        batcher.submit(2)
    assert not any(t.name == "gpu-batcher" and t.is_alive() for t in threading.enumerate())
