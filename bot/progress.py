"""One message that shows the latest progress, edited at most once every `interval_s` (rate limits).

`show` is synchronous and only remembers the newest text (and preview image), so GPU callbacks never
wait on Discord; a writer task owned by the `async with` block does the edits. A failed edit is logged and skipped:
progress is a courtesy, never a reason for the job to fail. A preview rides along with the next edit
after it arrives, as `edit(text, preview_png)`; edits without a new one are `edit(text)` and keep the
image already shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)
EDIT_TIMEOUT_S = 10.0


class ProgressMessage:
    def __init__(
        self, edit: Callable[..., Awaitable[Any]], *, interval_s: float = 2.0, first_delay_s: float = 0.0
    ) -> None:
        self._edit = edit
        self.interval_s = interval_s
        self.first_delay_s = first_delay_s  # a quick job is answered without any progress edit
        self._latest: str | None = None
        self._preview: bytes | None = None  # newer than the one shown
        self._shown: str | None = None
        self._changed = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._first_edit: asyncio.TimerHandle | None = None  # until then, no writer task exists
        self._closed = False
        self.edits = 0

    def show(self, text: str, preview_png: bytes | None = None) -> None:
        self._latest = text
        if preview_png is not None:
            self._preview = preview_png
        self._changed.set()

    async def __aenter__(self) -> ProgressMessage:
        # A timer, not a sleeping task: most answers come before the first edit is due, and a burst of
        # them then costs no task each.
        self._first_edit = asyncio.get_running_loop().call_later(self.first_delay_s, self._start_writer)
        return self

    def _start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write(), name="progress-edits")

    async def __aexit__(self, *exc_info: object) -> None:
        if self._first_edit is not None:
            self._first_edit.cancel()
        if self._writer is None:
            return
        # The flag as well as the cancel: a cancel that lands as an edit completes can be lost, and the
        # writer must still stop rather than wait for a change that never comes.
        self._closed = True
        self._changed.set()
        self._writer.cancel()
        _, pending = await asyncio.wait({self._writer}, timeout=EDIT_TIMEOUT_S)
        if pending:
            log.error("the progress writer did not stop; leaving it")
        self._writer = None

    async def _write(self) -> None:
        while not self._closed:
            await self._changed.wait()
            self._changed.clear()
            text, preview = self._latest, self._preview
            if self._closed or text is None or (text == self._shown and preview is None):
                continue
            try:
                async with asyncio.timeout(EDIT_TIMEOUT_S):
                    await (self._edit(text) if preview is None else self._edit(text, preview))
                self._shown = text
                if self._preview is preview:
                    self._preview = None
                self.edits += 1
            except Exception:
                log.warning("a progress edit failed; the job goes on", exc_info=True)
            await asyncio.sleep(self.interval_s)
