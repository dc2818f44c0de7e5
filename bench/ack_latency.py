"""Acknowledgement latency under a burst: the bot against a bare discord.py client, in one run.

The stand-in runs in this process. Each contender runs in a child process against its own stand-in and
gets the same bursts of N simultaneous /qwerty (same users, same prompts): the Stable Qwerty bot (the
real QwertyBot, with a GPU client that sleeps and a server with BANNED_WORDS banned phrases, so the
figures are the work around the ack, not a GPU's), and a bare discord.py client that only defers, then
answers after the same sleep (the floor this machine and library set). Each member is a different user
(per-user limits would otherwise refuse most of a burst). Latency is from the INTERACTION_CREATE frame
leaving the stand-in to the callback reaching it.

Both clients run side by side and get the same bursts in turn (the order alternating), so load from
elsewhere on the machine falls on both alike. A client's first burst after its start finds no open HTTP
connections (every callback opens one) and code paths never run; later ones find the pool a running
client has. A first burst happens once per start and gives one p99 of N (its second-worst figure at
N = 200), which a stall of this shared machine can spoil, so the whole start is repeated (`--starts`,
fresh processes each time, the first burst going to each client in turn). Printed: each burst; for
each start both p99s of the first burst and of the later ones, and their ratio, bot / bare; then the
median ratio over the starts, with every start's ratio beside it.
Target: ratio <= 1.3 at N = 200, all answered.

Run: python bench/ack_latency.py [-n 200] [--starts 5] [--warm-rounds 2] [--gpu-delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.discord_stub import DiscordStub  # noqa: E402

TOKEN = "bench-token"
TARGET_RATIO = 1.3
BANNED_WORDS = 200
BURSTS = ("first burst (new connections)", "later bursts (pooled connections)")


async def serve_bot(data_dir: str, gpu_delay: float) -> None:
    """The child: the bot as `python -m bot` builds it, but with the sleeping GPU client."""
    from bot.app import QwertyBot
    from bot.serve import point_discord_py_at, run_until_stopped
    from bot.settings import BotSettings
    from bot.wiring import make_app_services
    from tests.support.sleepy_gpu import SleepyGpu

    settings = BotSettings(_env_file=None, DATA_DIR=Path(data_dir), WANDB_MODE="disabled", DISCORD_TOKEN=TOKEN)
    point_discord_py_at(settings)
    app = make_app_services(settings, SleepyGpu(delay_s=gpu_delay))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stop.set)
    try:
        async with QwertyBot(settings=settings, app=app, guild_ready_timeout=0.1) as bot:
            await run_until_stopped(bot, TOKEN, stop)
    finally:
        await app.close()


async def serve_bare(gpu_delay: float) -> None:
    """The floor: discord.py with one command that defers, sleeps and answers; nothing else."""
    import io

    import discord
    from discord import app_commands

    from bot.app import intents
    from bot.serve import point_discord_py_at
    from bot.settings import BotSettings
    from tests.support.sleepy_gpu import tiny_png

    point_discord_py_at(BotSettings(_env_file=None))
    client = discord.Client(intents=intents(), guild_ready_timeout=0.1)
    tree = app_commands.CommandTree(client)

    @tree.command(description="bare")
    async def qwerty(interaction: discord.Interaction, prompt_prefix: str) -> None:
        await interaction.response.defer(thinking=True)
        await asyncio.sleep(gpu_delay)
        await interaction.followup.send(prompt_prefix, file=discord.File(io.BytesIO(tiny_png(1)), "x.png"))

    asyncio.get_running_loop().add_signal_handler(15, lambda: asyncio.ensure_future(client.close()))
    freezer = asyncio.create_task(freeze_heap_when_ready(client))
    async with client:
        await client.start(TOKEN)
    freezer.cancel()


async def freeze_heap_when_ready(client) -> None:
    """This process imported the bot's modules (for its settings and intents), a heap a bare client does
    not have, whose full collections would slow the floor: frozen once ready, as the bot freezes its own
    (bot/serve.py). The bot's other tuning, fewer young collections, is the bot's: the floor keeps
    CPython's defaults."""
    await client.wait_until_ready()
    gc.collect()
    gc.freeze()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@contextmanager
def no_collections() -> Iterator[None]:
    """The stand-in is the instrument: a full collection in this process mid-burst (it grows with every
    start) would count against whichever client's burst it fell in. Collect before, not during."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def one_burst(stub: DiscordStub, n: int, first_user: int) -> tuple[list[float], int, float]:
    with no_collections():
        return await _burst(stub, n, first_user)


async def _burst(stub: DiscordStub, n: int, first_user: int) -> tuple[list[float], int, float]:
    interactions = await asyncio.gather(*(
        stub.slash_command("qwerty", {"prompt_prefix": f"burst {i}"}, user_id=first_user + i) for i in range(n)
    ))
    acks = await asyncio.gather(*(i.wait_ack(timeout=30) for i in interactions), return_exceptions=True)
    answers = await asyncio.gather(*(
        i.responses.wait_for(lambda s: s.kind == "followup" and bool(s.files), timeout=120) for i in interactions
    ), return_exceptions=True)
    latencies = [(a.at - i.sent_at) * 1000 for a, i in zip(acks, interactions) if not isinstance(a, Exception)]
    spread = (max(i.sent_at for i in interactions) - min(i.sent_at for i in interactions)) * 1000
    return latencies, sum(not isinstance(a, Exception) for a in answers), spread


def ban_words(data_dir: str, guild_id: str) -> None:
    """The bot's server bans BANNED_WORDS phrases, none of them in the burst's prompts."""
    from commands.community import CommunityStore

    with CommunityStore(Path(data_dir) / "community.sqlite3") as store:
        store.add_banned_words(guild_id, [f"banned phrase {i}" for i in range(BANNED_WORDS)], "bench", 0.0)


@asynccontextmanager
async def contender(n: int, gpu_delay: float, bare: bool) -> AsyncIterator[DiscordStub]:
    """A stand-in with its client running in a child process, settled and ready for bursts."""
    async with DiscordStub(token=TOKEN) as stub:
        with tempfile.TemporaryDirectory() as data_dir:
            ban_words(data_dir, str(stub.guild_id))
            env = {**os.environ, **stub.bot_env(), "PYTHONPATH": str(ROOT)}
            mode = ["--bare"] if bare else ["--serve-bot", data_dir]
            child = await asyncio.create_subprocess_exec(
                sys.executable, __file__, *mode, "--gpu-delay", str(gpu_delay), "--child", env=env,
            )
            try:
                await stub.wait_connected(timeout=60)
                await asyncio.sleep(0.5)  # let the client settle (guild ready, recovery done)
                yield stub
            finally:
                child.send_signal(15)
                await asyncio.wait_for(child.wait(), 60)


async def run(n: int, gpu_delay: float, starts: int, warm_rounds: int) -> None:
    labels = BURSTS if warm_rounds else BURSTS[:1]
    ratios: dict[str, list[float]] = {label: [] for label in labels}
    complete = True
    for start in range(starts):
        latencies: dict[tuple[str, str], list[float]] = {}
        complete &= await one_start(start, n, gpu_delay, warm_rounds, latencies)
        for label in labels:
            bot_p99, bare_p99 = percentile(latencies["bot", label], 0.99), percentile(latencies["bare", label], 0.99)
            ratios[label].append(bot_p99 / bare_p99)
            print(f"start {start}, {label}: bot p99 {bot_p99:.1f} ms, bare p99 {bare_p99:.1f} ms, "
                  f"ratio {bot_p99 / bare_p99:.2f}")
    print(f"bot / bare, ack p99 of {n} simultaneous /qwerty, median of {starts} start(s) "
          f"(target ratio <= {TARGET_RATIO}):")
    for label in labels:
        median = statistics.median(ratios[label])
        verdict = "meets" if median <= TARGET_RATIO and complete else "MISSES"
        each = ", ".join(f"{ratio:.2f}" for ratio in ratios[label])
        print(f"  {label}: ratio {median:.2f} (each start: {each}): {verdict}")


async def one_start(
    start: int, n: int, gpu_delay: float, warm_rounds: int, latencies: dict[tuple[str, str], list[float]],
) -> bool:
    """Both clients started afresh, side by side; each round sends the same burst to one, then to the
    other, the order alternating (and the first round's order with the start), so load from elsewhere
    on the machine falls on both alike. True when every interaction was acknowledged and answered."""
    names = {"bot": "Stable Qwerty bot", "bare": "bare discord.py client (floor)"}
    complete = True
    async with contender(n, gpu_delay, bare=False) as bot, contender(n, gpu_delay, bare=True) as bare:
        stubs = {"bot": bot, "bare": bare}
        for round_index in range(1 + warm_rounds):
            label = BURSTS[min(round_index, 1)]
            order = ["bot", "bare"] if (start + round_index) % 2 == 0 else ["bare", "bot"]
            for name in order:
                measured, answered, spread = await one_burst(stubs[name], n, 10_000 + round_index * n)
                print(f"start {start} round {round_index} {names[name]}:", end="")
                report(label, n, measured, answered, spread)
                latencies.setdefault((name, label), []).extend(measured)
                complete = complete and len(measured) == answered == n
                await asyncio.sleep(1.0)
    return complete


def report(label: str, n: int, latencies: list[float], answered: int, spread_ms: float) -> None:
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(f" {label}: acknowledged {len(latencies)}/{n}, answered {answered}/{n}; ack ms p50 {p50:.1f} "
          f"p99 {p99:.1f} max {max(latencies):.1f} (frames written over {spread_ms:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--starts", type=int, default=5, help="fresh starts of both clients; the median ratio is printed")
    parser.add_argument("--warm-rounds", type=int, default=2, help="bursts after the first, to each client")
    parser.add_argument("--gpu-delay", type=float, default=0.05, help="seconds the sleeping GPU takes per request")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bot", metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(serve_bare(args.gpu_delay) if args.bare else serve_bot(args.serve_bot, args.gpu_delay))
    else:
        asyncio.run(run(args.n, args.gpu_delay, args.starts, args.warm_rounds))


if __name__ == "__main__":
    main()
