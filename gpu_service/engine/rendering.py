"""Rendering a batch with fixed seeds, as training's class images, validation and quality samples need."""

from __future__ import annotations

import torch
from PIL import Image


def render_images(
    pipe, prompts: list[str], seeds: list[int], *, side: int, steps: int, guidance: float
) -> list[Image.Image | None]:
    """One image per (prompt, seed), each seed in its own CPU generator; None where the checker flagged."""
    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
    with torch.inference_mode():
        output = pipe(
            prompt=prompts, num_inference_steps=steps, guidance_scale=guidance, generator=generators,
            width=side, height=side,
        )
    flagged = output.nsfw_content_detected or [False] * len(prompts)
    return [None if flag else image for image, flag in zip(output.images, flagged, strict=True)]
