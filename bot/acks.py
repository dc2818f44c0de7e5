"""Acknowledgements first: the work after one waits while other interactions' acks are on their way.

Discord drops an interaction that is not acknowledged within 3 s, and a member who clicked sees nothing
until the ack lands. In a burst (200 members asking at once) the work after each early ack (a job record,
a place in the queue, progress) would otherwise run between the later acks and delay them. So that work
waits until no ack is in flight, never longer than `max_wait_s`, so a steady stream of acks cannot hold it
back for long (bench/ack_latency.py measures the acks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

MAX_WAIT_S = 0.25  # the most an acknowledged request's work waits; small beside any generation


class AcksFirst:
    def __init__(self, max_wait_s: float = MAX_WAIT_S) -> None:
        self.max_wait_s = max_wait_s
        self._in_flight = 0
        self._none_in_flight = asyncio.Event()
        self._none_in_flight.set()

    @contextlib.asynccontextmanager
    async def acknowledging(self) -> AsyncIterator[None]:
        """Around one ack (the defer call), successful or not."""
        self._in_flight += 1
        self._none_in_flight.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._none_in_flight.set()

    async def settled(self) -> None:
        """Return once no ack is in flight, or after `max_wait_s`."""
        if self._none_in_flight.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_wait_s):
                await self._none_in_flight.wait()
