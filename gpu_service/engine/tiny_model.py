"""A tiny random-weight Stable Diffusion pipeline, written to disk without network.

Tests and the demo load it through the same `DiffusionPipeline.from_pretrained` call as real weights, so
every code path above it is the production one, only small.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPConfig,
)

TOKENIZER_MAX_LENGTH = 77
_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
# A few merges so common letter pairs become one token, as in a real BPE vocabulary.
_MERGES = ("t h", "e r", "i n", "a n", "o n", "th e</w>", "q w", "d o", "o g</w>")


def _byte_unicode_table() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes (GPT-2's table)."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    visible += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = visible[:], 0
    for byte in range(256):
        if byte not in visible:
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def write_tokenizer_files(directory: Path) -> CLIPTokenizer:
    directory.mkdir(parents=True, exist_ok=True)
    chars = _byte_unicode_table()
    tokens = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in _MERGES]
    tokens += list(_SPECIAL_TOKENS)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    # Without model_max_length the limit defaults to ~1e30 and the pipeline overflows.
    return CLIPTokenizer.from_pretrained(directory, model_max_length=TOKENIZER_MAX_LENGTH)


def _text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4,
        num_hidden_layers=2, projection_dim=32, max_position_embeddings=TOKENIZER_MAX_LENGTH,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos_token_id=eos,
        pad_token_id=eos,
    )
    return CLIPTextModel(config)


def _safety_checker(flag_everything: bool) -> StableDiffusionSafetyChecker:
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        image_size=32, patch_size=8, projection_dim=32,
    )
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(text_config={"hidden_size": 32, "projection_dim": 32}, vision_config=vision.to_dict(),
                   projection_dim=32)
    )
    # A concept matches when cosine similarity exceeds its threshold; a threshold of -2 is always
    # exceeded, +2 never. This gives a checker that deterministically flags all images or none.
    with torch.no_grad():
        threshold = -2.0 if flag_everything else 2.0
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    return checker


def build_tiny_pipeline(*, seed: int = 0, safety_checker: str = "none") -> StableDiffusionPipeline:
    """`safety_checker`: "none", "flag-all" or "flag-none" (a real checker that never flags)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = write_tokenizer_files(Path(scratch))
    checker = None if safety_checker == "none" else _safety_checker(safety_checker == "flag-all")
    extractor = None if checker is None else CLIPImageProcessor(crop_size=32, size=32)
    return StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
        scheduler=scheduler, safety_checker=checker, feature_extractor=extractor,
        requires_safety_checker=checker is not None,
    )


def write_tiny_model(directory: Path, *, seed: int = 0, safety_checker: str = "none") -> Path:
    """Write the tiny pipeline to `directory` in diffusers format and return the directory."""
    pipe = build_tiny_pipeline(seed=seed, safety_checker=safety_checker)
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory
