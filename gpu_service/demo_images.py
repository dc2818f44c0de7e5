"""Synthetic training photos for the offline demo: the same 'subject' drawn in a few poses.

They stand in for the five or six photos a community would upload; the tiny model learns from them in
seconds on a CPU.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

DEMO_IMAGE_SIZE = 128


def draw_subject(seed: int, size: int = DEMO_IMAGE_SIZE) -> Image.Image:
    """A brown 'dog' (body, head, ears) on a grassy background, placed and scaled by `seed`."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (96 + rng.randrange(40), 160, 90))
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.7, 1.0) * size / 128
    x, y = rng.uniform(20, 50) * size / 128, rng.uniform(40, 60) * size / 128
    brown = (120 + rng.randrange(20), 80, 40)
    draw.ellipse((x, y, x + 70 * scale, y + 40 * scale), fill=brown)  # body
    head = (x + 55 * scale, y - 20 * scale)
    draw.ellipse((*head, head[0] + 30 * scale, head[1] + 30 * scale), fill=brown)
    draw.polygon([(head[0] + 4 * scale, head[1] + 2 * scale), (head[0] + 10 * scale, head[1] - 12 * scale),
                  (head[0] + 14 * scale, head[1] + 4 * scale)], fill=(60, 40, 20))  # ear
    draw.ellipse((head[0] + 18 * scale, head[1] + 10 * scale, head[0] + 22 * scale, head[1] + 14 * scale),
                 fill=(0, 0, 0))  # eye
    return image


def write_demo_images(directory: Path, count: int = 4) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = directory / f"qwerty-{seed}.png"
        draw_subject(seed).save(path)
        paths.append(path)
    return paths
