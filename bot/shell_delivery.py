"""Answering an admitted generation in the terminal: run it, save its images, log it, print where they are.

/qwerty, /reroll and /variations all end here, as bot.delivery is for Discord.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot import render
from bot.progress_bar import GenerationBar
from commands.outputs import save_generation
from commands.qwerty import Admission, QwertyService

Say = Callable[[str], None]


class ShellDelivery:
    def __init__(
        self, qwerty: QwertyService, outputs_dir: Path, say: Say, progress_out: TextIO | None = None
    ) -> None:
        self.qwerty = qwerty
        self.outputs_dir = outputs_dir
        self.say = say
        self.progress_out = progress_out  # the bar's terminal (standard error when None)

    async def deliver(self, admission: Admission) -> None:
        with GenerationBar(self.progress_out) as bar:
            generation = await self.qwerty.run(admission, bar)
        paths = save_generation(generation, self.outputs_dir)
        await self.qwerty.finish(generation)
        for line in render.generation_reply(generation).content.splitlines():
            self.say(render.plain(line))
        for path in paths:
            self.say(f"wrote {path}")
        job = generation.generation_id
        self.say(f"job {job}: /reroll, /variations, /share or /delete job:{job}")
