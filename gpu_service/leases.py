"""At most one training per subject: one idea, a training lease, held at three scopes.

- `TrainingLeases` in the bot process (commands.train.TrainingService): from a /train's intake until its
  training ends, so a second /train of the subject is refused before any image is fetched;
- `TrainingLeases` in the local engine (gpu_service.local_client): until the training thread really ends,
  even when its caller stopped waiting;
- `SharedTrainingLease` across Modal containers (modal_app.py): an entry in a Modal Dict kept fresh by a
  heartbeat, so a second bot process or a retried call cannot train the subject twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from gpu_service.errors import GpuBusy

log = logging.getLogger(__name__)
LEASE_HEARTBEAT_S = 20.0
LEASE_STALE_S = 3 * 60.0  # a holder silent this long is gone (preempted or killed)
TAKEOVER_SETTLE_S = 1.0


class TrainingLease:
    """One subject's lease in a `TrainingLeases` table; `release` is idempotent, so a second release
    never frees a later training's lease on the subject."""

    def __init__(self, held: set[str], subject: str) -> None:
        self._held = held
        self.subject = subject
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._held.discard(self.subject)

    def __enter__(self) -> TrainingLease:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class TrainingLeases:
    """The subjects being trained in this process. Used from one thread (the event loop) only."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def take(self, subject: str) -> TrainingLease:
        """GpuBusy when the subject's lease is held."""
        if subject in self._held:
            raise GpuBusy(f"A training for `{subject}` is already running; one at a time per subject.")
        self._held.add(subject)
        return TrainingLease(self._held, subject)

    def __contains__(self, subject: str) -> bool:
        return subject in self._held


class SharedTrainingLease:
    """At most one training per subject, across containers: an entry in a Modal Dict kept fresh by a heartbeat.

    `put(skip_if_exists=True)` is atomic, so of two jobs starting together exactly one gets the lease; the other
    fails with GpuBusy. A holder that dies (preempted, killed at its timeout) stops beating, and its lease is
    taken over once stale. The same job id arriving again (Modal retrying a preempted input, or a duplicate
    spawn) waits for the lease instead of failing: by then the job either finished (and the retry returns its
    version at once) or died (and the retry resumes from its checkpoints).
    """

    def __init__(
        self, store: Any, subject: str, job_id: str, *, heartbeat_s: float = LEASE_HEARTBEAT_S,
        stale_s: float = LEASE_STALE_S, clock=time.time,
    ) -> None:
        self.store, self.subject, self.job_id = store, subject, job_id
        # Job ids have no ':', so leases never collide with progress entries; subject keys have no '#'.
        self.key = f"lease:{subject}"
        self.token = uuid.uuid4().hex
        self.heartbeat_s, self.stale_s, self.clock = heartbeat_s, stale_s, clock
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> SharedTrainingLease:
        self._acquire()
        self._beat = threading.Thread(target=self._keep_fresh, name=f"lease-{self.subject}", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        with contextlib.suppress(Exception):  # an unreleased lease goes stale; never mask the job's outcome
            if self._ours():
                self.store.pop(self.key, None)

    def _acquire(self) -> None:
        deadline = self.clock() + self.stale_s
        while not self.store.put(self.key, self._entry(), skip_if_exists=True):
            holder = self.store.get(self.key) or {}
            if self.clock() - holder.get("beat", 0.0) >= self.stale_s:
                self.store.put(self.key, self._entry())  # the holder stopped beating: it is gone
                # Two contenders may both take over; the last write wins. Settle before checking, so
                # only that one sees the lease as its own.
                time.sleep(TAKEOVER_SETTLE_S)
                if self._ours():
                    return
            elif holder.get("job_id") != self.job_id or self.clock() > deadline:
                raise GpuBusy(
                    f"A training for '{self.subject}' is already running (job {holder.get('job_id')}). "
                    "Try again when it has finished."
                )
            else:
                time.sleep(min(self.heartbeat_s, self.stale_s / 10))

    def _keep_fresh(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if self._ours():
                    self.store.put(self.key, self._entry())
            except Exception as error:
                log.warning("lease heartbeat for %s failed: %r", self.subject, error)

    def _ours(self) -> bool:
        return (self.store.get(self.key) or {}).get("token") == self.token

    def _entry(self) -> dict:
        return {"job_id": self.job_id, "token": self.token, "beat": self.clock()}


@contextlib.contextmanager
def deployment_slot(store: Any, job_id: str, slots: int, **timing: float) -> Iterator[int]:
    """Hold one of the deployment's `slots` training slots (MAX_CONCURRENT_TRAININGS), across containers and
    bot processes: each slot is a `SharedTrainingLease` on its own Dict entry, so a dead holder's slot goes
    stale and is taken over like a subject's lease. GpuBusy when every slot is held."""
    for index in range(slots):
        lease = SharedTrainingLease(store, f"#slot-{index}", job_id, **timing)
        try:
            lease.__enter__()
        except GpuBusy:
            continue
        try:
            yield index
        finally:
            lease.__exit__(None, None, None)
        return
    raise GpuBusy(
        f"The bot already runs {slots} training(s) at once, the most it may (MAX_CONCURRENT_TRAININGS); "
        "try again when one has finished."
    )
