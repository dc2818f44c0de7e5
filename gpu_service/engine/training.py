"""Train one subject version: DreamBooth with LoRA on the UNet (optionally the text encoder), then publish.

`train_version` is the one entry point. Its stages, each a function a test can call on its own:

    check       config, images, resolution and prompt lengths, before any heavy work
    class data  prior-preservation images from the base model, cached per base model and class phrase
    fit         load models, add LoRA, cache latents/embeddings, resume, step, checkpoint
    save        the diffusers-format LoRA file in the job's staging directory
    quality     DINO, CLIP-I and CLIP-T against the base model, the best kept checkpoint chosen, the report
                card drawn (gpu_service.engine.train_quality); skipped when no QualitySettings are given
    validate    fixed prompts rendered by the base pipeline with the new LoRA, as serving would
    publish     registry.publish: the new version becomes live in one step

Idempotent by job id: a job that already produced a version returns it at once; a job that crashed resumes
from its newest checkpoint. Nothing reaches the registry before publish, so a failure leaves the live
version as it was. One training per subject at a time is the caller's job (a lock around the call).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from gpu_service.engine.generator import encode_png
from gpu_service.engine.pipeline_loading import MODEL_LOADING, load_pipeline
from gpu_service.engine.rendering import render_images
from gpu_service.engine.train_config import TrainingConfig, check_resolution, with_steps
from gpu_service.engine.train_data import (
    build_train_data,
    cache_embeddings,
    cache_latents,
    class_image_dir,
    decode_images,
    ensure_class_images,
    image_sha256,
    load_class_images,
    tokenize,
)
from gpu_service.engine.train_loop import Trainer, build_trainer, resume, run_training, stop_if_asked
from gpu_service.engine.train_model import (
    Precision,
    add_lora,
    choose_precision,
    free_memory,
    load_models,
    load_tokenizer,
    model_revision,
    native_side,
    save_lora,
)
from gpu_service.engine.train_progress import ProgressReporter, ProgressSink
from gpu_service.engine.train_quality import (
    REPORT_CARD,
    QualityOutcome,
    QualitySettings,
    assess_quality,
    write_candidates,
)
from gpu_service.engine.train_wandb import TrainingTracker
from gpu_service.errors import GpuServiceError, TrainingFailed
from gpu_service.prompts import build_prompt
from gpu_service.registry import WEIGHTS_NAME, ModelRegistry, VersionMetadata
from gpu_service.schemas import ModelVersion, TrainRequest, TrainResult

log = logging.getLogger(__name__)

VALIDATION_FILE = "validation-{:02d}.png"  # published beside the weights, so a replayed job returns them
CLASS_GUIDANCE = 7.5


@dataclass(frozen=True)
class TrainingJob:
    """Everything one training reads, resolved and checked."""

    request: TrainRequest
    config: TrainingConfig
    base_model: str
    token: str | None
    instance_prompt: str
    class_prompt: str
    validation_prompts: tuple[str, ...]
    image_sha256: tuple[str, ...]
    staging: Path
    class_dir: Path
    resolution: int
    precision: Precision
    stop: threading.Event | None = None  # set by the caller to stop the training between steps and stages


def train_version(
    request: TrainRequest,
    images: list[bytes],
    *,
    base_model: str,
    registry: ModelRegistry,
    config: TrainingConfig,
    instance_prefix: str,
    instance_postfix: str,
    class_cache_dir: Path,
    on_progress: ProgressSink | None = None,
    tracker: TrainingTracker | None = None,
    token: str | None = None,
    progress_interval_s: float = 1.0,
    quality: QualitySettings | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Train `request`'s subject on `images` (PNG bytes, already cropped) and publish it as the live version.

    `request.steps`, when set, replaces `config.max_steps`. With `quality`, the version is scored and may be
    an earlier kept checkpoint (see gpu_service.engine.train_quality). An exception raised by `on_progress` stops the
    training (its checkpoints stay; calling again with the same job id resumes). Errors: InvalidRequest for
    bad input (before any work), TrainingFailed for anything else that goes wrong before publishing.
    Once `stop` is set the training ends at its next step or stage with TrainingCancelled, publishing nothing.
    """
    existing = registry.resume_job(request.subject, request.job_id)
    if existing is not None:
        return previous_result(registry, existing, request.job_id)
    reporter = ProgressReporter(request.job_id, on_progress, progress_interval_s)
    try:
        job, pictures = prepare_job(
            request, images, base_model=base_model, registry=registry, config=config,
            instance_prefix=instance_prefix, instance_postfix=instance_postfix,
            class_cache_dir=class_cache_dir, token=token,
        )
        return _train(replace(job, stop=stop), pictures, registry, reporter, tracker, quality)
    except Exception as error:
        reporter.quietly("failed", message=str(error))
        if tracker is not None:
            tracker.finish(failed=True)
        if isinstance(error, GpuServiceError):
            raise
        log.exception("training %s failed", request.job_id)
        raise TrainingFailed(
            f"Training {request.job_id} failed ({error.__class__.__name__}: {str(error)[:300]}). "
            "Running the same job again resumes from its last checkpoint."
        ) from error


def previous_result(registry: ModelRegistry, version: ModelVersion, job_id: str) -> TrainResult:
    directory = registry.version_dir(version.subject, version.version)
    pngs = tuple(path.read_bytes() for path in sorted(directory.glob("validation-*.png")))
    card = directory / REPORT_CARD
    return TrainResult(
        job_id=job_id, version=version, validation_images=pngs,
        report_card=card.read_bytes() if card.is_file() else None,
    )


def prepare_job(
    request: TrainRequest, images: list[bytes], *, base_model: str, registry: ModelRegistry,
    config: TrainingConfig, instance_prefix: str, instance_postfix: str, class_cache_dir: Path,
    token: str | None = None,
) -> tuple[TrainingJob, list[Image.Image]]:
    """Every check that needs no weights: config, images, resolution, prompt lengths (InvalidRequest)."""
    config = with_steps(config, request.steps)
    pictures = decode_images(images)
    resolution = check_resolution(config, native_side(base_model, token))
    instance_prompt = build_prompt(instance_prefix, request.instance_phrase, instance_postfix)
    class_prompt = build_prompt(instance_prefix, request.class_phrase, instance_postfix)
    validation_prompts = tuple(config.validation_prompts_for(request.instance_phrase))
    tokenizer = load_tokenizer(base_model, token)
    tokenize(tokenizer, instance_prompt, "instance_phrase")
    tokenize(tokenizer, class_prompt, "class_phrase")
    for prompt in validation_prompts:
        tokenize(tokenizer, prompt, "validation_prompts")
    job = TrainingJob(
        request=request, config=config, base_model=base_model, token=token,
        instance_prompt=instance_prompt, class_prompt=class_prompt, validation_prompts=validation_prompts,
        image_sha256=tuple(image_sha256(images)),
        staging=registry.staging_dir(request.subject, request.job_id),
        class_dir=class_image_dir(class_cache_dir, base_model, request.class_phrase),
        resolution=resolution, precision=choose_precision(config),
    )
    return job, pictures


def _train(
    job: TrainingJob, pictures: list[Image.Image], registry: ModelRegistry, reporter: ProgressReporter,
    tracker: TrainingTracker | None, quality: QualitySettings | None,
) -> TrainResult:
    class_paths = class_images(job, reporter)
    steps, final_loss, losses = fit(job, pictures, class_paths, reporter, tracker, candidates=quality is not None)
    free_memory()
    total = job.config.max_steps
    report = None
    job_id = job.request.job_id
    if quality is not None:
        stop_if_asked(job.stop, job_id)
        reporter.state("saving", step=steps, total=total, message="scoring the new version")
        report = score_version(job, pictures, quality, losses, steps)
    stop_if_asked(job.stop, job_id)
    reporter.state("saving", step=steps, total=total, message="rendering validation images")
    validation = render_validation(job)
    metadata = version_metadata(job, class_paths, steps, final_loss, tracker, report)
    stop_if_asked(job.stop, job_id)
    version = registry.publish(job.request.subject, job.request.job_id, metadata)
    if tracker is not None:
        try:  # the version is live: nothing after this may turn the job into a failure
            _log_outcome(tracker, job, registry, version, validation, metadata, report)
        except Exception:
            log.exception("logging job %s to W&B failed after publishing (ignored)", job.request.job_id)
    reporter.quietly("done", step=steps, total=total, message=f"version {version.version} is live")
    pngs = tuple(png for _, png in validation)
    return TrainResult(
        job_id=job.request.job_id, version=version, validation_images=pngs,
        report_card=report.card if report else None,
    )


def score_version(
    job: TrainingJob, pictures: list[Image.Image], quality: QualitySettings, losses: list[tuple[int, float]],
    steps: int,
) -> QualityOutcome | None:
    """The quality report, or None when it cannot be made (the models cannot be loaded, say): a report is
    worth less than the training it describes, so its failure is logged and the version published without."""
    try:
        return assess_quality(job, pictures, quality, losses, steps)
    except Exception:
        log.exception("job %s: the quality report failed; publishing the version without it", job.request.job_id)
        return None
    finally:
        free_memory()


def class_images(job: TrainingJob, reporter: ProgressReporter) -> list[Path]:
    """The cached class images this training uses (rendering only missing ones); [] without prior loss."""
    config = job.config
    if not config.with_prior_preservation:
        return []
    renderer = _ClassRenderer(job)

    def report(done: int, total: int) -> None:
        reporter.state("training", total=config.max_steps, message=f"class images {done}/{total}")

    try:
        return ensure_class_images(job.class_dir, config.num_class_images, renderer, report)
    finally:
        renderer.close()


class _ClassRenderer:
    """Renders class images with the base pipeline, loaded only if some image is missing."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        self.pipe = None

    def __call__(self, seeds: list[int]) -> list[Image.Image | None]:
        stop_if_asked(self.job.stop, self.job.request.job_id)
        if self.pipe is None:
            self.pipe = load_pipeline(self.job.base_model, token=self.job.token)
        config = self.job.config
        return render_images(
            self.pipe, [self.job.class_prompt] * len(seeds), seeds, side=self.job.resolution,
            steps=config.class_inference_steps, guidance=CLASS_GUIDANCE,
        )

    def close(self) -> None:
        self.pipe = None
        free_memory()


def fit(
    job: TrainingJob, pictures: list[Image.Image], class_paths: list[Path], reporter: ProgressReporter,
    tracker: TrainingTracker | None, *, candidates: bool = False,
) -> tuple[int, float | None, list[tuple[int, float]]]:
    """Train (resuming if a checkpoint exists) and save the LoRA file; returns (steps, final loss, the
    (step, loss) of each step this call ran). `candidates`: also write a LoRA file per earlier kept checkpoint.
    """
    trainer = build_job_trainer(job, pictures, class_paths)
    fingerprint = job_fingerprint(job, class_paths)
    start = resume(trainer, job.staging, fingerprint) or 0
    total = job.config.max_steps
    resumed = f"resumed from step {start}" if start else ""
    reporter.state("training", step=start, total=total, message=resumed)
    if tracker is not None:
        tracker.start(job.request.job_id, tracker_config(job, len(class_paths)))
        captions = [f"training image {i}" for i in range(len(pictures))]
        photos = [encode_png(p) for p in pictures]
        tracker.log_images("train/images", photos, captions, step=start)
        tracker.log_dataset(photos, subject=job.request.subject, job_id=job.request.job_id)
    reporter.begin_steps(start)
    losses: list[tuple[int, float]] = []

    def on_step(step: int, loss: float, saved: bool) -> None:
        losses.append((step, loss))
        if tracker is not None:
            tracker.log_step(step, loss, trainer.lr)
        reporter.step(step, total, loss, trainer.lr, force=saved)

    run_training(
        trainer, staging=job.staging, fingerprint=fingerprint, on_step=on_step, stop=job.stop,
        job_id=job.request.job_id,
    )
    reporter.state("saving", step=trainer.step, total=total, message="saving the LoRA weights")
    save_lora(trainer.models, job.staging, train_text_encoder=job.config.train_text_encoder)
    if candidates:
        write_candidates(trainer.models, job.staging, final_step=trainer.step,
                         train_text_encoder=job.config.train_text_encoder)
    return trainer.step, trainer.final_loss, losses


def build_job_trainer(job: TrainingJob, pictures: list[Image.Image], class_paths: list[Path]) -> Trainer:
    """Models with fresh LoRA adapters, and the data as cached latents (and embeddings, if frozen)."""
    config, precision = job.config, job.precision
    with MODEL_LOADING:
        models = load_models(job.base_model, precision, job.token)
    groups = add_lora(models, config, precision)
    data = build_train_data(
        models.tokenizer, pictures, load_class_images(class_paths), resolution=job.resolution,
        instance_prompt=job.instance_prompt, class_prompt=job.class_prompt,
    )
    cache_latents(data, models.vae, device=precision.device, dtype=precision.weight_dtype)
    models.vae = None  # the step samples from cached posteriors: the VAE leaves the GPU
    if not config.train_text_encoder:
        cache_embeddings(data, models.text_encoder, device=precision.device)
        models.text_encoder = None
    free_memory()
    prediction_type = models.noise_scheduler.config.prediction_type
    return build_trainer(models, data, groups, config, precision, prediction_type=prediction_type)


def job_fingerprint(job: TrainingJob, class_paths: list[Path]) -> str:
    """Identifies the training a checkpoint belongs to: a changed input means starting over."""
    identity = {
        "config": job.config.hyperparameters(), "base_model": job.base_model,
        "instance_prompt": job.instance_prompt, "class_prompt": job.class_prompt,
        "images": job.image_sha256, "class_images": [p.name for p in class_paths],
        "resolution": job.resolution, "precision": job.precision.name,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def hyperparameters(job: TrainingJob, class_count: int) -> dict:
    return job.config.hyperparameters() | {
        "resolution": job.resolution, "lora_alpha": job.config.effective_lora_alpha,
        "precision": job.precision.name, "device": job.precision.device.type,
        "class_images": class_count, "instance_prompt": job.instance_prompt,
        "class_prompt": job.class_prompt,
    }


def tracker_config(job: TrainingJob, class_count: int) -> dict:
    request = job.request
    return hyperparameters(job, class_count) | {
        "job_id": request.job_id, "subject": request.subject, "instance_phrase": request.instance_phrase,
        "class_phrase": request.class_phrase, "base_model": job.base_model,
        "instance_images": len(job.image_sha256), "requested_by": request.requested_by,
    }


def render_validation(job: TrainingJob) -> list[tuple[str, bytes]]:
    """The validation prompts through the base pipeline plus the saved LoRA file, exactly as serving loads
    it (seed `config.seed + i` for prompt i): (prompt, PNG) pairs, also written beside the weights."""
    config = job.config
    pipe = load_pipeline(job.base_model, token=job.token)
    with MODEL_LOADING:
        pipe.load_lora_weights(job.staging, weight_name=WEIGHTS_NAME, adapter_name="validation")
    pngs = []
    for index, prompt in enumerate(job.validation_prompts):
        (image,) = render_images(
            pipe, [prompt], [config.seed + index], side=job.resolution, steps=config.validation_steps,
            guidance=config.validation_guidance,
        )
        if image is not None:
            pngs.append((prompt, encode_png(image)))
    del pipe
    free_memory()
    for old in job.staging.glob("validation-*.png"):
        old.unlink()
    for index, (_, png) in enumerate(pngs):
        (job.staging / VALIDATION_FILE.format(index)).write_bytes(png)
    return pngs


def version_metadata(
    job: TrainingJob, class_paths: list[Path], steps: int, final_loss: float | None,
    tracker: TrainingTracker | None, report: QualityOutcome | None = None,
) -> VersionMetadata:
    request = job.request
    return VersionMetadata(
        job_id=request.job_id, subject=request.subject, instance_phrase=request.instance_phrase,
        class_phrase=request.class_phrase, base_model=job.base_model,
        base_revision=model_revision(job.base_model), hyperparameters=hyperparameters(job, len(class_paths)),
        steps=steps, final_loss=final_loss, image_sha256=list(job.image_sha256),
        trained_by=request.requested_by, wandb_url=tracker.url if tracker else None,
        wandb_artifact=tracker.artifact_ref(request.subject, request.job_id) if tracker else None,
        quality=report.quality if report else None,
    )


def _log_outcome(
    tracker: TrainingTracker, job: TrainingJob, registry: ModelRegistry, version: ModelVersion,
    validation: list[tuple[str, bytes]], metadata: VersionMetadata, report: QualityOutcome | None,
) -> None:
    """After publishing: validation images, the quality report and the model artifact (aliases: job id,
    version-<n>)."""
    captions, pngs = [prompt for prompt, _ in validation], [png for _, png in validation]
    tracker.log_images("validation/images", pngs, captions, step=version.steps)
    if report is not None:
        tracker.log_quality(report.quality, report.rows(job.validation_prompts), report.card, step=version.steps)
    weights = registry.version_dir(version.subject, version.version) / WEIGHTS_NAME
    tracker.log_model(
        weights, subject=version.subject, job_id=job.request.job_id, version=version.version,
        metadata=metadata.model_dump(mode="json", exclude={"created_at"}),
    )
    tracker.finish()
