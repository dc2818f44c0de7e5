"""What the quality report adds to a training: the same job timed without and with it, and the ratio.

    python bench/quality_cost.py                       # tiny models on this machine, 500 steps
    python bench/quality_cost.py --steps 100 --samples 2
    python bench/quality_cost.py --base-model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --clip openai/clip-vit-base-patch32 --dino facebook/dino-vits16   # real weights (cached or online)

The target is a ratio of at most 1.25 for a 500-step training on the GPU. Class images are rendered by a
warm-up job first so neither timed job pays for them; both timed jobs then train the same config from
scratch, W&B off. The "with" job renders QUALITY_SAMPLES images per validation prompt for the base model
and each kept checkpoint, scores them and draws the card. Prints figures only; no asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TMPDIR", tempfile.gettempdir())
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def photos(count: int) -> list[bytes]:
    from gpu_service.demo_images import draw_subject
    from gpu_service.engine.generator import encode_png

    return [encode_png(draw_subject(seed)) for seed in range(count)]


def timed_job(job_id: str, base_model: str, root: Path, steps: int, quality) -> float:
    from gpu_service.engine.train_config import training_config
    from gpu_service.engine.training import train_version
    from gpu_service.registry import ModelRegistry
    from gpu_service.schemas import ImageSource, TrainRequest

    images = photos(4)
    request = TrainRequest(
        job_id=job_id, subject="bench", instance_phrase="qwerty dog", class_phrase="dog",
        images=tuple(ImageSource(data=png) for png in images),
    )
    config = training_config(max_steps=steps, num_class_images=10, checkpoint_every=max(1, steps // 5))
    started = time.perf_counter()
    train_version(
        request, images, base_model=base_model, registry=ModelRegistry(root / job_id), config=config,
        instance_prefix="a photo of a", instance_postfix="", class_cache_dir=root / "classes", quality=quality,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--samples", type=int, default=4, help="QUALITY_SAMPLES")
    parser.add_argument("--base-model", help="default: the tiny model, written to a temp dir")
    parser.add_argument("--clip", help="default: the tiny CLIP")
    parser.add_argument("--dino", help="default: the tiny DINO")
    args = parser.parse_args()

    import torch

    from gpu_service.engine.tiny_model import write_tiny_model
    from gpu_service.engine.tiny_quality import write_tiny_quality_models
    from gpu_service.engine.train_quality import QualitySettings

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        base = args.base_model or str(write_tiny_model(root / "tiny"))
        clip, dino = (args.clip, args.dino) if args.clip and args.dino else write_tiny_quality_models(root / "q")
        quality = QualitySettings(clip_model=str(clip), dino_model=str(dino), samples=args.samples)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(f"base model {base}, {args.steps} steps, {args.samples} samples per prompt, on {device}")
        timed_job("warm-up", base, root, 1, None)
        without = timed_job("without", base, root, args.steps, None)
        print(f"training without the report: {without:7.1f} s", flush=True)
        with_report = timed_job("with", base, root, args.steps, quality)
        print(f"training with the report:    {with_report:7.1f} s")
        print(f"ratio: {with_report / without:.2f} (target <= 1.25 for 500 steps on the GPU)")


if __name__ == "__main__":
    main()
