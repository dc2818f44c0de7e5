"""The bot process's start-up time and memory, without the gpu extra (torch, diffusers) imported.

Starts `python -m bot` against the loopback Discord with GPU_BACKEND=modal (the deployment's setting:
the engine runs on Modal), measures the time from spawning the process to its gateway session being
ready, then its resident memory (VmRSS, and the peak VmHWM) once it has settled, and checks that no torch
library is mapped into it. Targets: < 1.5 s, < 150 MB.

Run: python bench/bot_footprint.py [--rounds 3] [--settle 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.discord_stub import DiscordStub  # noqa: E402

TOKEN = "footprint-token"
TARGET_START_S = 1.5
TARGET_RSS_MB = 150.0
HEAVY = ("libtorch", "/torch/", "/diffusers/", "/transformers/")


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def heavy_libraries(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if any(h in line for h in HEAVY)})


async def one_start(settle_s: float) -> tuple[float, float, float, list[str]]:
    async with DiscordStub(token=TOKEN) as stub:
        with tempfile.TemporaryDirectory() as data_dir:
            env = {key: value for key, value in os.environ.items() if not key.startswith("DISCORD_")}
            env.update(stub.bot_env(), PYTHONPATH=str(ROOT), DISCORD_TOKEN=TOKEN, DATA_DIR=data_dir,
                       GPU_BACKEND="modal", WANDB_MODE="disabled")
            began = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=data_dir, env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await stub.wait_connected(timeout=60)
                started = time.monotonic() - began
                await asyncio.sleep(settle_s)  # the GPU client is built in the background meanwhile
                rss, peak = memory_mb(process.pid)
                heavy = heavy_libraries(process.pid)
            finally:
                process.terminate()
                await asyncio.wait_for(process.wait(), 60)
    return started, rss, peak, heavy


async def run(rounds: int, settle_s: float) -> None:
    results = [await one_start(settle_s) for _ in range(rounds)]
    starts = [r[0] for r in results]
    rss = [r[1] for r in results]
    peaks = [r[2] for r in results]
    heavy = sorted({lib for r in results for lib in r[3]})
    start, memory = statistics.median(starts), statistics.median(rss)
    print(f"python -m bot (GPU_BACKEND=modal), {rounds} starts:")
    print(f"  spawn to gateway ready: median {start:.2f} s (min {min(starts):.2f}, max {max(starts):.2f}); "
          f"target < {TARGET_START_S} s: {'meets' if start < TARGET_START_S else 'MISSES'}")
    print(f"  memory after {settle_s:g} s: VmRSS median {memory:.0f} MB (peak VmHWM {max(peaks):.0f} MB); "
          f"target < {TARGET_RSS_MB:.0f} MB: {'meets' if memory < TARGET_RSS_MB else 'MISSES'}")
    print(f"  torch/diffusers/transformers mapped: {', '.join(heavy) if heavy else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after connecting")
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.settle))


if __name__ == "__main__":
    main()
