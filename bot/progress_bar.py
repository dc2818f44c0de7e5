"""A tqdm bar for one generation in a terminal (`make inference`, the shell's /qwerty): its place in the
queue (or the GPU warming up), then the steps. Like tqdm itself it draws only on a terminal, so scripts and logs stay clean."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from commands.qwerty import Queued, Rendering, Update, Warming


class GenerationBar:
    def __init__(self, out: TextIO | None = None) -> None:
        # disable=None: tqdm draws only when `out` is a terminal; at most 100 steps, so every one is drawn
        self.bar = tqdm(total=0, desc="waiting", unit="step", file=out or sys.stderr, disable=None,
                        dynamic_ncols=True, leave=False, mininterval=0)

    def __call__(self, update: Update) -> None:
        if isinstance(update, Queued):
            self.bar.set_description(f"#{update.position} in the queue", refresh=True)
        elif isinstance(update, Warming):
            self.bar.set_description(f"warming up the GPU (about {update.about_s} s)", refresh=True)
        elif isinstance(update, Rendering):
            if self.bar.total != update.total_steps:
                self.bar.set_description("rendering", refresh=False)
                self.bar.reset(total=update.total_steps)
            self.bar.update(max(0, update.step - self.bar.n))

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> GenerationBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
