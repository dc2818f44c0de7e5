"""Training-step figures: cached latents/embeddings vs recomputing them, and LoRA vs full fine-tune memory.

    python bench/train_step.py            # CPU: about 70 s on 2 idle cores; needs ~15 GB RAM free
    python bench/train_step.py --gpu      # CUDA: SD1.5 shapes at 512 px

(a) Step time of the trainer's own step (gpu_service.engine.train_loop) with the VAE posteriors and prompt
    embeddings computed once, against encoding every image and prompt again at each step, batch 1 plus one
    class image. CPU: the tiny test model at 64 px, and SD1.5's layout at a quarter of its widths at 256 px;
    --gpu: SD1.5 shapes at 512 px.
(b) Peak memory of training steps (1 by default, --memory-steps) of an SD1.5-shaped UNet (random weights): LoRA (rank 8 on the
    attention projections) against a full fine-tune, each in its own subprocess. CPU: peak RSS (ru_maxrss)
    at 32x32 latents (256 px); --gpu: torch.cuda.max_memory_allocated at 512 px. If the machine has too
    little free memory for a full SD1.5 fine-tune in fp32, a half-width UNet is used and the output says so.

Prints figures only; no asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TMPDIR", tempfile.gettempdir())
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

UNET_SHAPES = {  # block_out_channels, cross_attention_dim, norm groups, attention heads (SD1.5's head width)
    "sd15": ((320, 640, 1280, 1280), 768, 32, 8),
    "half": ((160, 320, 640, 640), 384, 32, 4),
    "quarter": ((80, 160, 320, 320), 192, 16, 2),
}
VAE_SHAPES = {"sd15": (128, 256, 512, 512), "quarter": (32, 64, 128, 128)}
TEXT_SHAPES = {"sd15": (768, 3072, 12, 12), "quarter": (192, 768, 3, 12)}  # hidden, mlp, heads, layers
SHAPE_NAMES = {
    "tiny": "tiny test model (2x VAE, 2-level UNet)",
    "quarter": "SD1.5 layout at 1/4 widths (8x VAE, 4-level UNet, 12-layer CLIP)",
    "sd15": "SD1.5 shapes (random weights)",
}
FULL_SD15_NEEDS_GIB = 20  # fp32 weights + grads + 2 Adam moments (~14 GB) plus activations and headroom


def sd_unet(shape: str):
    from diffusers import UNet2DConditionModel

    blocks, cross, groups, heads = UNET_SHAPES[shape]
    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=blocks,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=cross, attention_head_dim=heads, norm_num_groups=groups,
    )


def write_sd_shaped_pipeline(directory: Path, shape: str) -> Path:
    """A random-weight pipeline with SD1.5's layout (8x VAE, 4-level UNet, 12-layer CLIP) at `shape` widths."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from gpu_service.engine.tiny_model import write_tokenizer_files

    torch.manual_seed(0)
    tokenizer = write_tokenizer_files(directory / "_tokenizer")
    hidden, mlp, heads, layers = TEXT_SHAPES[shape]
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=mlp, num_attention_heads=heads,
        num_hidden_layers=layers, max_position_embeddings=77, eos_token_id=eos, pad_token_id=eos,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
    ))
    vae = AutoencoderKL(
        block_out_channels=VAE_SHAPES[shape], layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        unet=sd_unet(shape), vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(directory / "model")
    return directory / "model"


# (a) cached vs recomputed inputs


def make_trainer(model_dir: Path, side: int, *, cached: bool, device: str):
    """The real trainer (gpu_service.engine.train_loop), with its inputs cached or encoded every step."""
    import numpy as np
    from PIL import Image

    from gpu_service.engine import train_data as data_mod
    from gpu_service.engine.train_config import training_config
    from gpu_service.engine.train_loop import build_trainer
    from gpu_service.engine.train_model import add_lora, choose_precision, load_models

    config = training_config(max_steps=1000, num_class_images=4, resolution=side, seed=0)
    precision = choose_precision(config, device)
    models = load_models(str(model_dir), precision)
    groups = add_lora(models, config, precision)
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(4)]
    data = data_mod.build_train_data(models.tokenizer, photos, photos, resolution=side,
                                     instance_prompt="a photo of a qwerty dog", class_prompt="a photo of a dog")
    if cached:
        data_mod.cache_latents(data, models.vae, device=precision.device, dtype=precision.weight_dtype)
        data_mod.cache_embeddings(data, models.text_encoder, device=precision.device)
        models.vae = models.text_encoder = None
    return build_trainer(models, data, groups, config, precision, prediction_type="epsilon")


def interleaved_step_times(trainers: list, steps: int) -> list[float]:
    """Median seconds per step of each trainer, stepping them in turn so machine load hits all alike."""
    from gpu_service.engine.train_loop import train_step

    times: list[list[float]] = [[] for _ in trainers]
    for round_ in range(steps + 1):  # round 0 warms up
        for index, trainer in enumerate(trainers):
            _sync()
            started = time.perf_counter()
            train_step(trainer)
            _sync()
            if round_:
                times[index].append(time.perf_counter() - started)
    return [statistics.median(values) for values in times]


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_caching(gpu: bool) -> None:
    device = "cuda" if gpu else "cpu"
    setups = [("sd15", 512, 10)] if gpu else [("tiny", 64, 15), ("quarter", 256, 6)]
    print("(a) step time of the trainer's LoRA step (rank 8, batch 1 + 1 class image): inputs cached once "
          "vs VAE encode + text encoder at every step")
    for shape, side, steps in setups:
        with tempfile.TemporaryDirectory() as scratch:
            if shape == "tiny":
                from gpu_service.engine.tiny_model import write_tiny_model

                model_dir = write_tiny_model(Path(scratch))
            else:
                model_dir = write_sd_shaped_pipeline(Path(scratch), shape)
            trainers = [make_trainer(model_dir, side, cached=flag, device=device) for flag in (True, False)]
            cached, live = interleaved_step_times(trainers, steps)
            del trainers
        print(f"    {SHAPE_NAMES[shape]}, {side} px, median of {steps} interleaved steps each:")
        print(f"        cached latents + embeddings: {cached * 1000:8.1f} ms/step")
        print(f"        VAE + text encoder per step: {live * 1000:8.1f} ms/step")
        print(f"        caching is {live / cached:.2f}x faster")


# (b) LoRA vs full fine-tune memory, one subprocess per variant


def memory_variant(variant: str, shape: str, side: int, gpu: bool, steps: int) -> dict:
    """Runs inside the subprocess: a few training steps; returns the peak memory figures."""
    import torch
    from diffusers import UNet2DConditionModel  # noqa: F401 (imported before the baseline is read)
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    torch.manual_seed(0)
    device = "cuda" if gpu else "cpu"
    baseline = _rss_mib()
    unet = sd_unet(shape)
    total = sum(p.numel() for p in unet.parameters())
    if variant == "lora":
        unet.requires_grad_(False)
        if gpu:
            unet.to(torch.float16)  # frozen weights in half precision, as the trainer keeps them on CUDA
        unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        cast_training_params(unet, dtype=torch.float32)
    unet.to(device).train()
    if gpu:
        unet.enable_gradient_checkpointing()
        torch.cuda.reset_peak_memory_stats()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    latents = torch.randn(1, 4, side // 8, side // 8, device=device)
    embeds = torch.randn(1, 77, UNET_SHAPES[shape][1], device=device)
    started = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=gpu):
            out = unet(latents, torch.tensor([500], device=device), embeds).sample
        torch.nn.functional.mse_loss(out.float(), latents).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    step_s = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "peak_mib": peak, "baseline_mib": 0.0 if gpu else baseline,
            "trainable": sum(p.numel() for p in params), "total": total, "step_s": step_s}


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _available_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def bench_memory(gpu: bool, shape: str | None, steps: int) -> None:
    side = 512 if gpu else 256
    if shape is None:
        shape = "sd15" if gpu or _available_gib() >= FULL_SD15_NEEDS_GIB else "half"
    results = {}
    for variant in ("lora", "full"):
        command = [sys.executable, __file__, "--_variant", variant, "--shape", shape, "--side", str(side),
                   "--memory-steps", str(steps)]
        command += ["--gpu"] if gpu else []
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    lora, full = results["lora"], results["full"]
    kind = "torch.cuda.max_memory_allocated" if gpu else "peak RSS (ru_maxrss) of a subprocess"
    note = "" if shape == "sd15" else f"  [NOT the SD1.5 widths: '{shape}' UNet; too little free memory here]"
    print(f"(b) peak memory, {shape} UNet {UNET_SHAPES[shape][0]} ({full['total'] / 1e6:.0f}M params), "
          f"{side} px ({side // 8}x{side // 8} latents), batch 1, AdamW, {steps} step(s); {kind}{note}")
    if steps == 1:
        print("    (1 step: the full fine-tune's Adam state arrives after its activations are freed, so its peak "
              "is a lower bound and the ratio an upper bound)")
    for name, row in (("LoRA r=8", lora), ("full UNet", full)):
        print(f"    {name:9}: {row['peak_mib']:9.0f} MiB peak ({row['peak_mib'] - row['baseline_mib']:.0f} MiB "
              f"above the {row['baseline_mib']:.0f} MiB process baseline), {row['trainable'] / 1e6:7.2f}M "
              f"trainable, {row['step_s']:.1f} s/step")
    above = (lora["peak_mib"] - lora["baseline_mib"]) / (full["peak_mib"] - full["baseline_mib"])
    print(f"    LoRA / full: {lora['peak_mib'] / full['peak_mib']:.2f}x peak ({above:.2f}x above baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="use CUDA and SD1.5 shapes at 512 px")
    parser.add_argument("--shape", choices=sorted(UNET_SHAPES), help="UNet widths for (b); default: sd15 if it fits")
    parser.add_argument("--memory-steps", type=int, default=1, help="training steps per variant in (b)")
    parser.add_argument("--side", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--_variant", choices=("lora", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._variant:
        print(json.dumps(memory_variant(args._variant, args.shape, args.side, args.gpu, args.memory_steps)))
        return
    import torch

    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu given but CUDA is not available")
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    bench_caching(args.gpu)
    bench_memory(args.gpu, args.shape, args.memory_steps)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
