"""How well a version learned its subject: the DreamBooth paper's three metrics and a verdict.

Ruiz et al., "DreamBooth", CVPR 2023, Table 1:

    DINO    mean pairwise cosine between the ViT-S/16 DINO embeddings (the CLS token) of generated and real
            images of the subject: subject fidelity, sensitive to what tells one dog from another
    CLIP-I  the same with CLIP image embeddings: subject fidelity, coarser
    CLIP-T  mean cosine between each generated image's CLIP image embedding and its prompt's CLIP text
            embedding: prompt fidelity

Images go through each model's own processor (its resize, crop and normalization), loaded with
`from_pretrained` from the same repo id or directory as the model.

The math on embeddings is kept apart from the models so it can be checked against hand-computed cosines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from gpu_service.engine.pipeline_loading import MODEL_LOADING

# Table 1 of the paper, for the report card and the verdict's justification.
PAPER_DREAMBOOTH_SD = {"dino": 0.668, "clip_i": 0.803, "clip_t": 0.305}
PAPER_TEXTUAL_INVERSION = {"dino": 0.569, "clip_i": 0.780, "clip_t": 0.255}
PAPER_REAL_IMAGES = {"dino": 0.774, "clip_i": 0.885}

# Overfit: DINO closer to the real photos' own similarity than to what DreamBooth reaches, i.e. within half
# the paper's DreamBooth-to-real gap (0.774 - 0.668 = 0.106) of the real photos ...
NEAR_REAL_DINO = (PAPER_REAL_IMAGES["dino"] - PAPER_DREAMBOOTH_SD["dino"]) / 2
# ... while CLIP-T drops below the base model's by at least half the gap that separates Textual Inversion
# (0.255), which the paper shows losing the prompt, from DreamBooth (0.305): 0.025.
CLIP_T_DROP = (PAPER_DREAMBOOTH_SD["clip_t"] - PAPER_TEXTUAL_INVERSION["clip_t"]) / 2
# Underfit: DINO gains less over the base model than half the gap between Textual Inversion (0.569), which
# the paper shows missing the subject's identity, and DreamBooth (0.668): 0.0495.
MIN_DINO_GAIN = (PAPER_DREAMBOOTH_SD["dino"] - PAPER_TEXTUAL_INVERSION["dino"]) / 2

VERDICTS = ("ok", "underfit", "overfit")


@dataclass(frozen=True)
class Scores:
    dino: float
    clip_i: float
    clip_t: float

    def as_dict(self) -> dict[str, float]:
        return {"dino": self.dino, "clip_i": self.clip_i, "clip_t": self.clip_t}


@dataclass(frozen=True)
class Embeddings:
    """Embeddings of one set of images, row i for image i."""

    dino: np.ndarray  # (n, d) DINO CLS tokens
    clip: np.ndarray  # (n, e) CLIP image embeddings


# The math


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def cosine_table(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """table[i, j] = cosine(rows[i], columns[j])."""
    return unit_rows(rows) @ unit_rows(columns).T


def fidelity_per_image(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Each generated image's mean cosine to every real photo; their mean is the paper's pairwise mean."""
    return cosine_table(generated, real).mean(axis=1)


def prompt_fidelity_per_image(images: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """cosine(images[i], texts[i]): each image against its own prompt, never another's."""
    return np.sum(unit_rows(images) * unit_rows(texts), axis=1)


def real_self_similarity(real: np.ndarray) -> float | None:
    """Mean cosine between distinct real photos (how the paper's "Real Images" row is measured)."""
    if len(real) < 2:
        return None
    table = cosine_table(real, real)
    return float(table[~np.eye(len(real), dtype=bool)].mean())


def per_image_scores(generated: Embeddings, texts: np.ndarray, real: Embeddings) -> list[Scores]:
    """(DINO, CLIP-I, CLIP-T) of each generated image; `texts[i]` embeds image i's prompt."""
    dino = fidelity_per_image(generated.dino, real.dino)
    clip_i = fidelity_per_image(generated.clip, real.clip)
    clip_t = prompt_fidelity_per_image(generated.clip, texts)
    return [Scores(float(d), float(i), float(t)) for d, i, t in zip(dino, clip_i, clip_t, strict=True)]


def mean_scores(scores: Sequence[Scores]) -> Scores:
    return Scores(*(float(np.mean([getattr(s, name) for s in scores])) for name in ("dino", "clip_i", "clip_t")))


# The verdict


def verdict(new: Scores, base: Scores, real_dino: float | None) -> str:
    """"overfit", "underfit" or "ok" (module constants say why the thresholds are what they are).

    `real_dino`: the training photos' own DINO similarity; None (a single photo) uses the paper's 0.774.
    """
    reference = PAPER_REAL_IMAGES["dino"] if real_dino is None else real_dino
    copies_photos = new.dino >= reference - NEAR_REAL_DINO
    loses_prompt = new.clip_t <= base.clip_t - CLIP_T_DROP
    if copies_photos and loses_prompt:
        return "overfit"
    if new.dino - base.dino < MIN_DINO_GAIN:
        return "underfit"
    return "ok"


# The models


def _features(output) -> torch.Tensor:
    """CLIP's get_*_features return a tensor in older transformers, an output whose pooler_output is the
    projected embedding in newer ones."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class QualityModels:
    """CLIP (image and text towers) and DINO, each with its own processor, in eval mode."""

    def __init__(self, clip_model: str, dino_model: str, *, token: str | None = None, device: str | None = None):
        from transformers import AutoImageProcessor, CLIPModel, CLIPProcessor, ViTModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with MODEL_LOADING:
            self.clip = CLIPModel.from_pretrained(clip_model, token=token).to(self.device).eval()
            self.clip_processor = CLIPProcessor.from_pretrained(clip_model, token=token)
            # DINO checkpoints carry no pooler; the metric reads the CLS token of the last hidden state.
            self.dino = ViTModel.from_pretrained(dino_model, token=token, add_pooling_layer=False)
        self.dino = self.dino.to(self.device).eval()
        self.dino_processor = AutoImageProcessor.from_pretrained(dino_model, token=token)

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> Embeddings:
        rgb = [image.convert("RGB") for image in images]
        clip_inputs = self.clip_processor(images=rgb, return_tensors="pt").to(self.device)
        clip = _features(self.clip.get_image_features(**clip_inputs))
        dino_inputs = self.dino_processor(images=rgb, return_tensors="pt").to(self.device)
        dino = self.dino(**dino_inputs).last_hidden_state[:, 0]
        return Embeddings(dino=_numpy(dino), clip=_numpy(clip))

    @torch.inference_mode()
    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        inputs = self.clip_processor(text=list(prompts), return_tensors="pt", padding=True, truncation=True)
        return _numpy(_features(self.clip.get_text_features(**inputs.to(self.device))))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
