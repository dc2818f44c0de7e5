"""Training data: instance photos and cached class images, as tensors, latents and prompt embeddings.

The data order is a pure function of (seed, sample counter): sample `c` of an epoch-shuffled stream is
found without any state, so a resumed run reads exactly the images an uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from gpu_service.errors import InvalidRequest

log = logging.getLogger(__name__)

ClassImageRenderer = Callable[[list[int]], list[Image.Image | None]]  # seeds -> images (None: withheld)
CLASS_RENDER_BATCH = 4
CLASS_FILE = re.compile(r"class-(\d{5})\.png")


def decode_images(images: Sequence[bytes]) -> list[Image.Image]:
    """Every training image as RGB; refuses the lot, naming each unreadable one, before work starts."""
    if not images:
        raise InvalidRequest("images: at least one training image is needed")
    decoded, bad = [], []
    for index, data in enumerate(images):
        try:
            with Image.open(io.BytesIO(data)) as image:
                decoded.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            bad.append(f"images[{index}] is not a readable image ({error.__class__.__name__})")
    if bad:
        raise InvalidRequest("; ".join(bad))
    return decoded


def image_sha256(images: Sequence[bytes]) -> list[str]:
    return [hashlib.sha256(data).hexdigest() for data in images]


def to_pixels(images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """(N, 3, side, side) in [-1, 1]: shorter side scaled to `resolution`, then centre-cropped."""
    tensors = [_square(image, resolution) for image in images]
    return torch.stack(tensors)


def _square(image: Image.Image, side: int) -> torch.Tensor:
    scale = side / min(image.size)
    width, height = max(side, round(image.width * scale)), max(side, round(image.height * scale))
    image = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(side, side, 3)
    return data.permute(2, 0, 1).float() / 127.5 - 1.0


# Class images for prior preservation, cached per base model and class phrase


def slug(text: str, limit: int = 48) -> str:
    """A readable, collision-safe directory name: lower-case words plus a short hash of the original."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "x"
    return f"{words}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def class_image_dir(cache_dir: Path, base_model: str, class_phrase: str) -> Path:
    return Path(cache_dir) / slug(base_model) / slug(class_phrase)


def cached_class_images(directory: Path, count: int) -> dict[int, Path]:
    """Readable cached class images by index, among the first `count` indexes."""
    found = {}
    for path in sorted(directory.glob("class-*.png")) if directory.is_dir() else []:
        match = CLASS_FILE.fullmatch(path.name)
        if match and int(match.group(1)) < count and _readable(path):
            found[int(match.group(1))] = path
    return found


def ensure_class_images(
    directory: Path, count: int, render: ClassImageRenderer, report: Callable[[int, int], None] | None = None
) -> list[Path]:
    """The first `count` class images, rendering only the missing ones (image i from seed i).

    Each file appears by one rename, so a kill mid-write never leaves a broken image in the cache.
    Withheld images (the safety checker flagged them) are skipped: the run uses the ones it has.
    """
    directory.mkdir(parents=True, exist_ok=True)
    have = cached_class_images(directory, count)
    missing = [index for index in range(count) if index not in have]
    if missing:
        log.info("rendering %d of %d class images into %s", len(missing), count, directory)
    for start in range(0, len(missing), CLASS_RENDER_BATCH):
        seeds = missing[start : start + CLASS_RENDER_BATCH]
        for seed, image in zip(seeds, render(seeds), strict=True):
            if image is not None:
                have[seed] = _write_png(directory / f"class-{seed:05d}.png", image)
        if report is not None:
            report(min(start + CLASS_RENDER_BATCH, len(missing)), len(missing))
    if not have:
        raise InvalidRequest("class_phrase: every class image was withheld by the safety checker")
    return [have[index] for index in sorted(have)]


def load_class_images(paths: Sequence[Path]) -> list[Image.Image]:
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError):
        log.warning("ignoring unreadable cached class image %s", path)
        return False


def _write_png(path: Path, image: Image.Image) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            image.save(file, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# Tensors the training step reads


@dataclass
class TrainData:
    """What the step samples from. Cached fields are filled by `cache_latents` / `cache_embeddings`."""

    instance_pixels: torch.Tensor | None  # (N, 3, H, W) in [-1, 1]; dropped once latents are cached
    class_pixels: torch.Tensor | None  # (M, 3, H, W), None without prior preservation
    instance_ids: torch.Tensor  # (1, 77) token ids of the instance prompt
    class_ids: torch.Tensor | None
    instance_count: int
    class_count: int
    instance_latents: torch.Tensor | None = None  # VAE posterior parameters (mean, logvar), (N, 2C, h, w)
    class_latents: torch.Tensor | None = None
    instance_embeds: torch.Tensor | None = None  # (1, 77, D)
    class_embeds: torch.Tensor | None = None

    @property
    def with_prior(self) -> bool:
        return self.class_count > 0


def tokenize(tokenizer, prompt: str, field: str) -> torch.Tensor:
    """Token ids padded to the encoder's length; a prompt longer than that is refused, never cut."""
    length = len(tokenizer(prompt, truncation=False).input_ids)
    if length > tokenizer.model_max_length:
        raise InvalidRequest(
            f"{field}: the prompt {prompt!r} is {length} tokens; the text encoder reads at most "
            f"{tokenizer.model_max_length}"
        )
    return tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids


def build_train_data(
    tokenizer, instance_images, class_images, *, resolution: int, instance_prompt: str, class_prompt: str
) -> TrainData:
    with_prior = bool(class_images)
    return TrainData(
        instance_pixels=to_pixels(instance_images, resolution),
        class_pixels=to_pixels(class_images, resolution) if with_prior else None,
        instance_ids=tokenize(tokenizer, instance_prompt, "instance_phrase"),
        class_ids=tokenize(tokenizer, class_prompt, "class_phrase") if with_prior else None,
        instance_count=len(instance_images),
        class_count=len(class_images) if with_prior else 0,
    )


@torch.no_grad()
def encode_latent_params(vae, pixels: torch.Tensor, *, device, dtype, chunk: int = 8) -> torch.Tensor:
    """VAE posterior parameters of each image (float32), so the step samples fresh latents cheaply."""
    out = []
    for start in range(0, len(pixels), chunk):
        batch = pixels[start : start + chunk].to(device=device, dtype=dtype)
        out.append(vae.encode(batch).latent_dist.parameters.float())
    return torch.cat(out)


def cache_latents(data: TrainData, vae, *, device, dtype) -> None:
    """Encode every image once; the pixels are dropped (the VAE is not needed again for training)."""
    data.instance_latents = encode_latent_params(vae, data.instance_pixels, device=device, dtype=dtype)
    data.instance_pixels = None
    if data.with_prior:
        data.class_latents = encode_latent_params(vae, data.class_pixels, device=device, dtype=dtype)
        data.class_pixels = None


@torch.no_grad()
def cache_embeddings(data: TrainData, text_encoder, *, device) -> None:
    data.instance_embeds = text_encoder(data.instance_ids.to(device))[0]
    if data.with_prior:
        data.class_embeds = text_encoder(data.class_ids.to(device))[0]


def sample_index(seed: int, counter: int, count: int, stream: int) -> int:
    """Index of sample `counter` in an endless stream of shuffled epochs over `count` items."""
    epoch, offset = divmod(counter, count)
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + stream) % 2**63)
    return int(torch.randperm(count, generator=generator)[offset])
