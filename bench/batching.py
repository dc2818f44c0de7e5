"""Four concurrent requests through the inference service (one batched pipeline call) against the same
four one after another. One run; prints both timings and the ratio (target >= 1.6x on CPU).

    python bench/batching.py            # CPU: the tiny test model at 64 px
    python bench/batching.py --gpu      # CUDA: an SD1.5-shaped random-weight pipeline at 512 px,
                                        # printing seconds per image and it/s as well
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TMPDIR", tempfile.gettempdir())
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_service.engine.service import InferenceService  # noqa: E402
from gpu_service.registry import ModelRegistry  # noqa: E402
from gpu_service.schemas import GenerateRequest  # noqa: E402

CONCURRENT = 4


def requests(steps: int, side: int) -> list[GenerateRequest]:
    return [
        GenerateRequest(prompt_prefix=f"a painting number {i} of a", subject="qwerty", seed=i, steps=steps,
                        width=side, height=side)
        for i in range(CONCURRENT)
    ]


def sequential(service: InferenceService, batch: list[GenerateRequest]) -> float:
    started = time.perf_counter()
    for request in batch:
        service.generate(request)
    return time.perf_counter() - started


def concurrent(service: InferenceService, batch: list[GenerateRequest]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        list(pool.map(service.generate, batch))
    return time.perf_counter() - started


def build_model(workdir: Path, gpu: bool) -> tuple[Path, int]:
    if gpu:
        from train_step import write_sd_shaped_pipeline

        return write_sd_shaped_pipeline(workdir, "sd15"), 512
    from gpu_service.engine.tiny_model import write_tiny_model

    return write_tiny_model(workdir / "model"), 64


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        model, side = build_model(Path(workdir), args.gpu)
        service = InferenceService(base_model=str(model), registry=ModelRegistry(Path(workdir) / "registry"),
                                   default_subject="qwerty", default_phrase="qwerty dog", max_batch=CONCURRENT)
        service.load()
        batch = requests(args.steps, side)
        sequential(service, batch[:1]), concurrent(service, batch)  # warm-up
        calls_before = service.pipeline_calls
        one_by_one, together = [], []
        for _ in range(args.rounds):  # interleaved: load drift hits both alike
            one_by_one.append(sequential(service, batch))
            together.append(concurrent(service, batch))
        calls = service.pipeline_calls - calls_before
        service.close()
    report(args, side, statistics.median(one_by_one), statistics.median(together), calls)


def report(args, side: int, one_by_one: float, together: float, calls: int) -> None:
    model = "SD1.5-shaped random weights" if args.gpu else "tiny model"
    print(f"{model}, {side}x{side}, {args.steps} steps, {CONCURRENT} requests, median of {args.rounds} rounds")
    print(f"one after another:   {one_by_one:8.3f} s   ({one_by_one / CONCURRENT:.3f} s/image)")
    print(f"concurrent, batched: {together:8.3f} s   ({together / CONCURRENT:.3f} s/image)")
    print(f"pipeline calls: {calls} for {args.rounds * 2 * CONCURRENT} requests")
    print(f"it/s (batched, per image): {args.steps * CONCURRENT / together:.1f}")
    print(f"batched speed-up: {one_by_one / together:.2f}x  (target >= 1.6x on CPU)")


if __name__ == "__main__":
    main()
