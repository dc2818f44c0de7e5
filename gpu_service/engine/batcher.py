"""Coalescing concurrent requests into batches that one thread runs, in arrival order."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from gpu_service.errors import GpuBusy

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
_STOP = object()


class MicroBatcher(Generic[Item, Outcome]):
    """Submissions queue up; one runner thread takes up to `max_batch` of them at a time.

    The runner waits at most `window_s` for company after the first item: a few milliseconds against
    seconds of diffusion, and what lets four requests sent "at once" share one pipeline call.
    `run_batch` returns one outcome per item; an Exception outcome fails only its own item.
    """

    def __init__(
        self, run_batch: Callable[[list[Item]], list[Outcome | BaseException]], *, max_batch: int = 4,
        window_s: float = 0.01, name: str = "gpu-batcher",
    ) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, item: Item) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise GpuBusy("The image engine is shutting down; please try again in a moment.")
            if not self._started:
                self._thread.start()
                self._started = True
            self._queue.put((item, future))
        return future

    def queued(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            started = self._started
        if started:
            self._queue.put(_STOP)
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            self._execute(batch)
            if stop:
                return

    def _collect(self, first) -> tuple[list, bool]:
        batch, deadline = [first], time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                entry = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if entry is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _execute(self, batch: list) -> None:
        # A caller that gave up (a cancelled await) cancelled its future: render nothing for it.
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            outcomes = self._run_batch([item for item, _ in live])
        except BaseException as error:  # the runner must outlive any one batch
            outcomes = [error] * len(live)
        for (_, future), outcome in zip(live, outcomes):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
