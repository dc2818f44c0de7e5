"""`python -m bot`: the bot process from start to a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal

import discord
import yarl
from discord.gateway import DiscordWebSocket

from bot.app import QwertyBot
from bot.lazy_gpu import LazyGpuClient
from bot.settings import BotSettings
from bot.wiring import AppServices, make_app_services, make_gpu_client

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 30.0
YOUNG_COLLECTION_EVERY = 50_000  # allocations; a few MB of cyclic garbage at most waits this long


def point_discord_py_at(settings: BotSettings) -> None:
    """discord.py keeps its endpoints on classes; set them once, here at the entry point.

    A plain Client never asks REST for the gateway's address, so DISCORD_GATEWAY_URL is applied too.
    """
    discord.http.Route.BASE = settings.DISCORD_API_BASE.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.DISCORD_GATEWAY_URL)


async def serve(settings: BotSettings, token: str) -> int:
    """Run until Discord closes us or a signal asks us to stop; 0 on a clean stop."""
    gpu = LazyGpuClient(functools.partial(make_gpu_client, settings), backend=settings.GPU_BACKEND)
    app = make_app_services(settings, gpu)
    warm_up = gpu.warm if settings.GPU_WARM_ON_START else None
    bot = QwertyBot(settings=settings, app=app, warm_up=warm_up)
    stop = asyncio.Event()
    try:
        await open_stores(app)
        with _stop_on_signals(stop):
            async with bot:
                return await run_until_stopped(bot, token, stop)
    finally:
        await app.close()


async def open_stores(app: AppServices) -> None:
    """Open the job store before logging in (the community store opens when it is built): a file the bot
    cannot use (commands.sqlite_file.SchemaTooNew) stops the start, instead of failing every command of a
    bot that looks healthy."""
    await app.jobs.unfinished()


async def tune_collector_when_ready(bot: discord.Client) -> None:
    """Keep the garbage collector out of a burst of acks. Once connected, everything built so far
    (imports, settings, caches) lives as long as the process: frozen, the collector never walks it again,
    so a full collection cannot pause a burst. And the young generation is collected every
    YOUNG_COLLECTION_EVERY allocations instead of CPython's 700: during a burst of 200 /qwerty thousands of
    young objects are alive, and each young collection walks them all again, for cyclic garbage this
    process rarely makes (bench/ack_latency.py: each step takes the ack p99 ratio to a bare client down by
    about 0.2). The process entry point's to call: it is process-wide, so tests that start many bots do not."""
    await bot.wait_until_ready()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


async def run_until_stopped(bot: discord.Client, token: str, stop: asyncio.Event) -> int:
    freezer = asyncio.create_task(tune_collector_when_ready(bot), name="tune-collector")
    runner = asyncio.create_task(bot.start(token), name="discord-client")
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    freezer.cancel()
    if runner not in done:
        log.info("stopping: closing the Discord connection and background work")
        await bot.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await runner
    except discord.LoginFailure as error:
        log.error("Discord refused the token (DISCORD_TOKEN): %s", error)
        return 1
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event):
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform/thread
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
