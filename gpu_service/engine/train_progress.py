"""Training progress for the caller: state changes always, step reports at most every `interval_s`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gpu_service.schemas import TrainProgress

log = logging.getLogger(__name__)

ProgressSink = Callable[[TrainProgress], None]


class ProgressReporter:
    """Calls `sink` with TrainProgress. An exception from the sink propagates (it stops the training)."""

    def __init__(
        self, job_id: str, sink: ProgressSink | None, interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.sink = sink
        self.interval_s = interval_s
        self.clock = clock
        self._last = float("-inf")
        self._first: tuple[int, float] | None = None  # (step, time) when this session's steps began

    def state(self, state: str, *, step: int = 0, total: int = 0, message: str = "") -> None:
        self._send(TrainProgress(job_id=self.job_id, state=state, step=step, total_steps=total, message=message))

    def begin_steps(self, step: int) -> None:
        self._first = (step, self.clock())

    def step(self, step: int, total: int, loss: float, lr: float, *, force: bool = False) -> None:
        now = self.clock()
        if not (force or step in (1, total) or now - self._last >= self.interval_s):
            return
        self._last = now
        self._send(TrainProgress(
            job_id=self.job_id, state="training", step=step, total_steps=total, loss=loss, lr=lr,
            eta_s=self._eta(step, total, now),
        ))

    def quietly(self, state: str, *, message: str = "", step: int = 0, total: int = 0) -> None:
        """A report whose failure must not matter (after publishing, or while failing anyway)."""
        try:
            self.state(state, step=step, total=total, message=message)
        except Exception:
            log.exception("progress callback failed for %s (ignored)", state)

    def _eta(self, step: int, total: int, now: float) -> float | None:
        if self._first is None or step <= self._first[0]:
            return None
        per_step = (now - self._first[1]) / (step - self._first[0])
        return per_step * (total - step)

    def _send(self, progress: TrainProgress) -> None:
        if self.sink is not None:
            self.sink(progress)
