"""Terminal progress for a generation: a tqdm bar in `make inference` and the shell, only on a terminal."""

from __future__ import annotations

import argparse
import io

from bot.cli import add_inference_arguments, run_inference
from bot.progress_bar import GenerationBar
from bot.shell import run_shell
from bot.wiring import make_app_services
from commands.qwerty import Queued, Rendering, Warming
from tests.bot.conftest import bot_settings
from tests.support.sleepy_gpu import SleepyGpu


class Terminal(io.StringIO):
    """Standard error as a terminal: tqdm draws there."""

    def isatty(self) -> bool:
        return True


def test_the_bar_shows_the_queue_place_then_the_steps():
    out = Terminal()
    with GenerationBar(out) as bar:
        bar(Queued(2))
        bar(Warming(40))
        for step in (1, 2, 3, 4):
            bar(Rendering(step, 4))
    drawn = out.getvalue()
    assert "#2 in the queue" in drawn and "warming up the GPU (about 40 s)" in drawn
    assert "rendering" in drawn and "4/4" in drawn


def test_not_on_a_terminal_it_draws_nothing():
    out = io.StringIO()
    with GenerationBar(out) as bar:
        bar(Rendering(1, 2))
    assert out.getvalue() == ""


async def test_the_shells_qwerty_draws_a_bar_apart_from_its_output(tmp_path):
    out, progress = io.StringIO(), Terminal()
    code = await run_shell(bot_settings(tmp_path / "data"), stdin=io.StringIO("/qwerty prompt_prefix:a steps:6\n"),
                           stdout=out, gpu=SleepyGpu(), progress_out=progress)
    assert code == 0 and "6/6" in progress.getvalue() and "6/6" not in out.getvalue()


async def test_make_inference_draws_a_bar(tmp_path, monkeypatch):
    gpu = SleepyGpu()
    settings = bot_settings(tmp_path / "data")
    monkeypatch.setattr("bot.cli.make_app_services", lambda settings: make_app_services(settings, gpu))
    parser = argparse.ArgumentParser()
    add_inference_arguments(parser, settings)
    progress = Terminal()
    args = parser.parse_args(["--prompt-prefix", "a", "--steps", "5"])
    assert await run_inference(args, settings, progress) == 0
    assert "5/5" in progress.getvalue() and [r.steps for r in gpu.generated] == [5]
