"""The generation use case (local client, worker thread, W&B logging) against a raw `pipe(...)` call.

Same tiny model, same seed, same steps, in one run. Prints both timings and their ratio (target <= 1.05).
Run: python bench/generate_overhead.py [--rounds N] [--steps N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bot.settings import BotSettings  # noqa: E402
from bot.wiring import make_app_services  # noqa: E402
from commands.context import RequestContext  # noqa: E402
from commands.generate import GenerateOptions  # noqa: E402
from gpu_service.engine.tiny_model import write_tiny_model  # noqa: E402


def raw_call(pipe, steps: int, seed: int) -> None:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.inference_mode():
        pipe(prompt="a gorgeous painting of a qwerty dog in space", num_inference_steps=steps,
             guidance_scale=7.5, generator=[generator], width=64, height=64)


async def measure(rounds: int, steps: int, workdir: Path) -> tuple[list[float], list[float]]:
    settings = BotSettings(_env_file=None, BASE_MODEL=str(write_tiny_model(workdir / "model")),
                        DATA_DIR=workdir / "data", WANDB_MODE="offline")
    services = make_app_services(settings)
    await services.gpu.start()
    pipe = services.gpu.service.load().pipe  # the very pipeline the use case drives
    options = GenerateOptions(prompt_prefix="a gorgeous painting of a", prompt_postfix="in space", seed=1,
                              steps=steps)
    context = RequestContext(front_end="bench")
    raw_call(pipe, steps, 1)
    await services.qwerty.generate(options, context)  # warm both paths (and W&B's first init)
    services.generation_log.flush()
    use_case, raw = [], []
    for _ in range(rounds):  # interleaved, so drift in machine load hits both sides alike
        started = time.perf_counter()
        await services.qwerty.generate(options, context)
        use_case.append(time.perf_counter() - started)
        started = time.perf_counter()
        raw_call(pipe, steps, 1)
        raw.append(time.perf_counter() - started)
    await services.close()
    return use_case, raw


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        use_case, raw = asyncio.run(measure(args.rounds, args.steps, Path(workdir)))
    median_use_case, median_raw = statistics.median(use_case), statistics.median(raw)
    print(f"tiny model, 64x64, {args.steps} steps, {args.rounds} rounds each, medians")
    print(f"raw pipe(...):            {median_raw * 1000:8.1f} ms")
    print(f"use case (client+W&B):    {median_use_case * 1000:8.1f} ms")
    print(f"ratio use case / raw:     {median_use_case / median_raw:8.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
