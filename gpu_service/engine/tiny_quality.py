"""Tiny random-weight quality models (CLIP and a DINO-style ViT), written to disk without network.

They are saved in the Hugging Face layout of `openai/clip-vit-base-patch32` and `facebook/dino-vits16`
(weights, config and the processor's own preprocessing config), so tests and the demo score images through
the very `from_pretrained` calls that load the real models.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)

from gpu_service.engine.tiny_model import TOKENIZER_MAX_LENGTH, write_tokenizer_files

CLIP_DIR = "clip"
DINO_DIR = "dino"
IMAGE_SIDE = 32
# ImageNet statistics, as facebook/dino-vits16's preprocessor_config.json has them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def write_tiny_clip(directory: Path, *, seed: int = 0) -> Path:
    """A CLIPModel with a 2-layer text and vision tower and its CLIPProcessor (resize + center crop)."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = write_tokenizer_files(Path(scratch))
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=TOKENIZER_MAX_LENGTH, eos_token_id=eos, pad_token_id=eos,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        image_size=IMAGE_SIDE, patch_size=8,
    )
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    images = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIDE}, crop_size=IMAGE_SIDE)
    model.save_pretrained(directory, safe_serialization=True)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def write_tiny_dino(directory: Path, *, seed: int = 0) -> Path:
    """A ViTModel (no pooler, as DINO's checkpoints) with a ViTImageProcessor using ImageNet statistics."""
    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        image_size=IMAGE_SIDE, patch_size=8,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(directory, safe_serialization=True)
    processor = ViTImageProcessor(
        size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
    )
    processor.save_pretrained(directory)
    return directory


def write_tiny_quality_models(directory: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Both models under `directory`; returns (clip dir, dino dir) for QUALITY_CLIP_MODEL / QUALITY_DINO_MODEL."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    directory = Path(directory)
    return (
        write_tiny_clip(directory / CLIP_DIR, seed=seed),
        write_tiny_dino(directory / DINO_DIR, seed=seed),
    )
