"""Progress edits: the newest text, never more often than the interval, a failed edit never fatal."""

from __future__ import annotations

import asyncio
import time

from bot.progress import ProgressMessage


class Recorder:
    def __init__(self, fail_first: bool = False):
        self.edits: list[tuple[float, str]] = []
        self.fail_first = fail_first

    async def __call__(self, text: str) -> None:
        if self.fail_first:
            self.fail_first = False
            raise ConnectionError("Discord hiccup")
        self.edits.append((time.monotonic(), text))


async def test_edits_show_the_latest_text_and_are_throttled():
    edit = Recorder()
    async with ProgressMessage(edit, interval_s=0.2) as progress:
        for step in range(1, 41):
            progress.show(f"step {step}/40")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.25)
    texts = [text for _, text in edit.edits]
    assert texts[0] == "step 1/40" and texts[-1] == "step 40/40"
    assert 2 <= len(texts) <= 4  # ~0.4 s of updates at one edit per 0.2 s, instead of 40 edits
    assert all(b - a >= 0.19 for (a, _), (b, _) in zip(edit.edits, edit.edits[1:]))


async def test_a_quick_job_makes_no_edit_at_all():
    edit = Recorder()
    async with ProgressMessage(edit, interval_s=0.2, first_delay_s=0.3) as progress:
        progress.show("step 1/2")
        await asyncio.sleep(0.05)
    assert edit.edits == []


async def test_a_failed_edit_is_skipped_and_later_ones_go_on():
    edit = Recorder(fail_first=True)
    async with ProgressMessage(edit, interval_s=0.05) as progress:
        progress.show("one")
        await asyncio.sleep(0.02)
        progress.show("two")
        await asyncio.sleep(0.1)
    assert [text for _, text in edit.edits] == ["two"]


async def test_closing_stops_the_writer_even_if_an_edit_swallows_the_cancellation():
    """Python 3.11 can lose a cancel that lands as an awaited call completes; the writer must stop anyway."""
    started = asyncio.Event()

    async def stubborn_edit(text: str) -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return  # the cancellation is lost here, as in the race

    progress = ProgressMessage(stubborn_edit, interval_s=0.01)
    async with asyncio.timeout(2):  # a writer that never stops would hang the exit
        async with progress:
            progress.show("step 1/2")
            await asyncio.wait_for(started.wait(), 1)


async def test_a_preview_rides_on_the_next_edit_once_and_within_the_interval():
    edits: list[tuple[float, str, bytes | None]] = []

    async def edit(text: str, preview: bytes | None = None) -> None:
        edits.append((time.monotonic(), text, preview))

    async with ProgressMessage(edit, interval_s=0.1) as progress:
        progress.show("step 1/3")
        await asyncio.sleep(0.05)
        progress.show("step 2/3", b"first")
        progress.show("step 2/3", b"second")  # newer: the first is never sent
        await asyncio.sleep(0.2)
        progress.show("step 3/3")
        await asyncio.sleep(0.2)
    assert [(text, preview) for _, text, preview in edits] == [
        ("step 1/3", None), ("step 2/3", b"second"), ("step 3/3", None)
    ]
    assert all(b - a >= 0.09 for (a, *_), (b, *_) in zip(edits, edits[1:]))
