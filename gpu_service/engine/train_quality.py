"""After training: score the new LoRA against the base model, choose the checkpoint to publish, draw the card.

    render   QUALITY_SAMPLES images per validation prompt from the base model, then with the LoRA of each
             kept checkpoint (the final weights and the earlier ones), all with the same seeds
    score    DINO, CLIP-I and CLIP-T of every set against the training photos (gpu_service.engine.quality)
    choose   among checkpoints whose verdict is "ok", the one with the highest DINO; when none is, the final
             one (its verdict then says what to change). The chosen weights become the version's file.
    card     the report card PNG, beside the weights in the job's staging directory (so it is published)

Quality is a report about a version, never a condition for it: the caller publishes whatever happens here.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gpu_service.engine.checkpoints import checkpoints
from gpu_service.engine.generator import encode_png
from gpu_service.engine.pipeline_loading import MODEL_LOADING, load_pipeline
from gpu_service.engine.quality import (
    PAPER_DREAMBOOTH_SD,
    PAPER_REAL_IMAGES,
    Embeddings,
    QualityModels,
    Scores,
    mean_scores,
    per_image_scores,
    real_self_similarity,
    verdict,
)
from gpu_service.engine.rendering import render_images
from gpu_service.engine.report_card import CardContent, render_report_card
from gpu_service.engine.train_model import free_memory, load_trainable_state, save_lora
from gpu_service.registry import WEIGHTS_NAME
from gpu_service.schemas import VERDICT_ADVICE

log = logging.getLogger(__name__)

REPORT_CARD = "report_card.png"
CANDIDATES_DIR = "candidates"
BASE = "base"


@dataclass(frozen=True)
class QualitySettings:
    clip_model: str  # a hub repo id or a local directory, loaded with from_pretrained
    dino_model: str
    samples: int = 4  # images per validation prompt


@dataclass(frozen=True)
class Sample:
    prompt_index: int
    seed: int
    image: Image.Image | None  # None: the safety checker withheld it


@dataclass(frozen=True)
class ScoredSet:
    """One model's samples and their scores: the base model (step None) or one checkpoint's LoRA."""

    step: int | None
    samples: list[Sample]
    per_image: list[Scores | None]
    mean: Scores
    verdict: str = ""


@dataclass(frozen=True)
class QualityOutcome:
    quality: dict[str, Any]  # what the version's metadata records
    sets: list[ScoredSet]  # the base model's first
    card: bytes

    def rows(self, prompts: Sequence[str]) -> list[dict[str, Any]]:
        """One row per sample, for the W&B table: prompt, seed, model, image (PNG or None), the three scores."""
        rows = []
        for scored in self.sets:
            model = BASE if scored.step is None else f"step-{scored.step}"
            for sample, scores in zip(scored.samples, scored.per_image, strict=True):
                values = scores.as_dict() if scores else dict.fromkeys(("dino", "clip_i", "clip_t"))
                png = encode_png(sample.image) if sample.image is not None else None
                rows.append({"prompt": prompts[sample.prompt_index], "seed": sample.seed, "model": model,
                             "png": png} | values)
        return rows


def sample_seeds(seed: int, prompt_index: int, samples: int) -> list[int]:
    """The seeds of one prompt's samples, shared by the base model and every checkpoint."""
    first = seed + prompt_index * samples
    return list(range(first, first + samples))


def write_candidates(models, staging: Path, *, final_step: int, train_text_encoder: bool) -> None:
    """A diffusers LoRA file for each kept checkpoint before the final one, under `candidates/step-<n>/`.

    Call after the final LoRA file is saved: this loads older weights into `models`.
    """
    shutil.rmtree(staging / CANDIDATES_DIR, ignore_errors=True)
    for checkpoint in checkpoints(staging):
        if checkpoint.step == final_step:
            continue
        lora, _, _ = checkpoint.load()
        load_trainable_state(models, lora)
        save_lora(models, staging / CANDIDATES_DIR / f"step-{checkpoint.step}", train_text_encoder=train_text_encoder)


def candidate_dirs(staging: Path, final_step: int) -> dict[int, Path]:
    """Step -> directory holding that step's LoRA file, newest first."""
    found = {final_step: staging}
    base = staging / CANDIDATES_DIR
    for path in sorted(base.iterdir()) if base.is_dir() else []:
        if (path / WEIGHTS_NAME).is_file() and path.name.startswith("step-"):
            found[int(path.name.removeprefix("step-"))] = path
    return dict(sorted(found.items(), reverse=True))


def render_sets(job, samples: int, candidates: dict[int, Path]) -> dict[int | None, list[Sample]]:
    """The base model's samples (key None), then each candidate's, from one loaded pipeline."""
    pipe = load_pipeline(job.base_model, token=job.token)
    rendered = {None: _render(pipe, job, samples)}
    for step, directory in candidates.items():
        name = f"step_{step}"
        with MODEL_LOADING:
            pipe.load_lora_weights(directory, weight_name=WEIGHTS_NAME, adapter_name=name)
        rendered[step] = _render(pipe, job, samples)
        pipe.delete_adapters(name)
    del pipe
    free_memory()
    return rendered


def _render(pipe, job, samples: int) -> list[Sample]:
    config, found = job.config, []
    for index, prompt in enumerate(job.validation_prompts):
        seeds = sample_seeds(config.seed, index, samples)
        images = render_images(
            pipe, [prompt] * samples, seeds, side=job.resolution, steps=config.validation_steps,
            guidance=config.validation_guidance,
        )
        found += [Sample(index, seed, image) for seed, image in zip(seeds, images, strict=True)]
    return found


def score_sets(
    models: QualityModels, photos: Sequence[Image.Image], prompts: Sequence[str],
    rendered: dict[int | None, list[Sample]],
) -> tuple[list[ScoredSet], Embeddings]:
    """Every set scored against the photos; verdicts compare each checkpoint with the base model."""
    real = models.embed_images(photos)
    texts = models.embed_texts(prompts)
    scored = {step: _score(models, samples, texts, real, step) for step, samples in rendered.items()}
    base = scored.pop(None)
    real_dino = real_self_similarity(real.dino)
    checked = [_with_verdict(s, base.mean, real_dino) for s in scored.values()]
    return [base, *checked], real


def _score(models: QualityModels, samples: list[Sample], texts: np.ndarray, real: Embeddings, step) -> ScoredSet:
    shown = [s for s in samples if s.image is not None]
    if not shown:
        raise ValueError("the safety checker withheld every sample, so there is nothing to score")
    embedded = models.embed_images([s.image for s in shown])
    scores = iter(per_image_scores(embedded, texts[[s.prompt_index for s in shown]], real))
    per_image = [next(scores) if s.image is not None else None for s in samples]
    return ScoredSet(step, samples, per_image, mean_scores([s for s in per_image if s is not None]))


def _with_verdict(scored: ScoredSet, base: Scores, real_dino: float | None) -> ScoredSet:
    return ScoredSet(scored.step, scored.samples, scored.per_image, scored.mean, verdict(scored.mean, base, real_dino))


def choose(sets: Sequence[ScoredSet]) -> ScoredSet:
    """The "ok" checkpoint with the highest DINO; the newest one when none is "ok". `sets`: newest first."""
    good = [s for s in sets if s.verdict == "ok"]
    return max(good, key=lambda s: s.mean.dino) if good else sets[0]


def assess_quality(job, photos: Sequence[Image.Image], settings: QualitySettings,
                   losses: Sequence[tuple[int, float]], final_step: int) -> QualityOutcome:
    """Render, score, choose and draw; the chosen weights end up as the staging directory's LoRA file."""
    candidates = candidate_dirs(job.staging, final_step)
    rendered = render_sets(job, settings.samples, candidates)
    models = QualityModels(settings.clip_model, settings.dino_model, token=job.token)
    sets, real = score_sets(models, photos, job.validation_prompts, rendered)
    del models
    free_memory()
    base, checkpoints_scored = sets[0], sets[1:]
    winner = choose(checkpoints_scored)
    if winner.step != final_step:
        shutil.copyfile(candidates[winner.step] / WEIGHTS_NAME, job.staging / WEIGHTS_NAME)
    quality = quality_record(job, settings, base, winner, checkpoints_scored, real)
    card = render_report_card(card_content(job, photos, base, winner, losses, final_step))
    (job.staging / REPORT_CARD).write_bytes(card)
    log.info("job %s: quality %s, step %d published", job.request.job_id, winner.verdict, winner.step)
    return QualityOutcome(quality=quality, sets=sets, card=card)


def quality_record(job, settings: QualitySettings, base: ScoredSet, winner: ScoredSet,
                   scored: Sequence[ScoredSet], real: Embeddings) -> dict[str, Any]:
    real_dino, real_clip = real_self_similarity(real.dino), real_self_similarity(real.clip)
    return winner.mean.as_dict() | {
        "base": base.mean.as_dict(), "verdict": winner.verdict, "prompts": list(job.validation_prompts),
        "models": {"dino": settings.dino_model, "clip": settings.clip_model}, "step": winner.step,
        "samples": settings.samples,
        "real": None if real_dino is None else {"dino": real_dino, "clip_i": real_clip},
        "checkpoints": [{"step": s.step, "verdict": s.verdict} | s.mean.as_dict() for s in scored],
    }


def card_content(job, photos, base: ScoredSet, winner: ScoredSet, losses, final_step: int) -> CardContent:
    prompts = job.validation_prompts
    request = job.request
    chosen = f"step {winner.step} of {final_step}" + ("" if winner.step == final_step else " (scored best)")
    return CardContent(
        title=f"{request.subject} ({request.instance_phrase}), job {request.job_id}: {chosen}",
        verdict_line=VERDICT_ADVICE[winner.verdict], photos=photos, prompts=prompts,
        base_samples=_per_prompt(base.samples, len(prompts)), new_samples=_per_prompt(winner.samples, len(prompts)),
        losses=losses, scores=winner.mean.as_dict(), base_scores=base.mean.as_dict(),
        paper_scores=PAPER_DREAMBOOTH_SD, paper_real=PAPER_REAL_IMAGES,
    )


def _per_prompt(samples: Sequence[Sample], prompts: int) -> list[list[Image.Image | None]]:
    return [[s.image for s in samples if s.prompt_index == index] for index in range(prompts)]
