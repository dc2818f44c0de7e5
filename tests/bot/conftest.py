"""A real discord.py bot (QwertyBot) run in-process against the loopback Discord stand-in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import QwertyBot
from bot.settings import BotSettings
from bot.wiring import make_app_services
from gpu_service.client import GpuClient
from tests.support.discord_stub import DiscordStub, discord_py_pointed_at
from tests.support.sleepy_gpu import SleepyGpu

TOKEN = "test-bot-token"
ADMIN_ID = 5555555555555555555
MEMBER_ID = 6666666666666666666
ADMINISTRATOR = 1 << 3


def bot_settings(data_dir: Path, base_model: Path | str = "unused", **overrides) -> BotSettings:
    """Settings as a deployment has them, never from this checkout's .env files."""
    values = dict(
        BASE_MODEL=str(base_model), DATA_DIR=data_dir, OUTPUTS_DIR=data_dir / "outputs", WANDB_MODE="disabled",
        DISCORD_TOKEN=TOKEN, ADMIN_USER_IDS=str(ADMIN_ID), PROGRESS_INTERVAL_S=1.0,
    )
    values.update(overrides)
    return BotSettings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def running_bot(stub: DiscordStub, settings: BotSettings, gpu: GpuClient) -> AsyncIterator[QwertyBot]:
    """Logged in and connected; on exit closed (background work cancelled) and its services closed."""
    app = make_app_services(settings, gpu)
    bot = QwertyBot(settings=settings, app=app, guild_ready_timeout=0.05)
    with discord_py_pointed_at(stub):
        try:
            await bot.login(TOKEN)
            connection = asyncio.create_task(bot.connect())
            try:
                await stub.wait_connected(timeout=10)
                yield bot
            finally:
                await bot.close()
                await asyncio.wait_for(connection, 10)
        finally:
            await app.close()


@pytest.fixture
async def stub() -> AsyncIterator[DiscordStub]:
    async with DiscordStub(token=TOKEN, roles={"trainer": 0}) as running:
        yield running


@pytest.fixture
def gpu() -> SleepyGpu:
    return SleepyGpu()


@pytest.fixture
async def bot(stub, gpu, tmp_path) -> AsyncIterator[QwertyBot]:
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu) as running:
        yield running


async def eventually(check, timeout: float = 5.0, interval: float = 0.02):
    """Await `check()` (an async predicate returning a truthy value) until it holds; return that value.

    For state the bot writes after its last message to the stub (job records, logs).
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)
