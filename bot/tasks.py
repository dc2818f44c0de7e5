"""The owner of the bot's background work (trainings, recovery, warm-up): nothing runs unwatched.

A task's failure is logged when it ends; `close` cancels what is left and waits for it, with a time
limit, so a shutdown never hangs and never leaves work running behind the bot's back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskOwner:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._awaited: set[asyncio.Task[Any]] = set()  # their caller handles failures
        self._closed = False

    def spawn(self, work: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        if self._closed:
            work.close()
            raise RuntimeError("the bot is shutting down; no new background work")
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def run(self, work: Coroutine[Any, Any, T], *, name: str) -> T:
        """Run `work` as an owned task and await it: a shutdown cancels it before the HTTP session
        closes; its failures are the caller's to handle (they are not logged here)."""
        task = self.spawn(work, name=name)
        self._awaited.add(task)
        return await task

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float = 10.0) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                log.error("background task %s did not stop within %.0f s", task.get_name(), timeout)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task in self._awaited:
            self._awaited.discard(task)
            return
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())
