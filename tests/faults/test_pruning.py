"""Kept images are pruned while the bot runs, not only at start: a bot that runs for months stays bounded."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from bot.app import QwertyBot
from bot.settings import BotSettings
from bot.wiring import make_app_services
from tests.support.sleepy_gpu import SleepyGpu, tiny_png


def kept_image(folder, name: str, age_days: float):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.write_bytes(tiny_png(1))
    then = time.time() - age_days * 86400
    os.utime(path, (then, then))
    return path


async def gone(path, within_s: float = 10.0) -> bool:
    async with asyncio.timeout(within_s):
        while path.exists():
            await asyncio.sleep(0.02)
    return True


@pytest.fixture
async def bot(tmp_path):
    settings = BotSettings(_env_file=None, DATA_DIR=tmp_path / "data", WANDB_MODE="disabled", IMAGE_RETENTION_DAYS=30)
    app = make_app_services(settings, SleepyGpu())
    bot = QwertyBot(settings=settings, app=app, prune_interval_s=0.05)
    yield bot
    await bot.tasks.close()
    await app.close()


async def test_images_past_retention_are_pruned_again_while_the_bot_runs(bot):
    folder = bot.app.images.root
    first = kept_image(folder, "old-at-start", age_days=31)
    fresh = kept_image(folder, "fresh", age_days=1)
    await bot.setup_hook()
    assert await gone(first)

    later = kept_image(folder, "old-later", age_days=31)  # written after the start-up prune
    assert await gone(later)
    assert fresh.exists()
    assert any(task.get_name() == "prune-images" for task in asyncio.all_tasks())


async def test_closing_the_bot_stops_the_pruning(bot):
    await bot.setup_hook()
    await bot.tasks.close()
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "prune-images"]
