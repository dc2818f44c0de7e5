"""One training job as a deployment runs it: settings in, a published, live version out.

The local client and the Modal `train` function both call `run_training_job`, so the two backends
train identically.
"""

from __future__ import annotations

import asyncio
import threading

from gpu_service.client import TrainProgressCallback
from gpu_service.engine.train_config import training_config
from gpu_service.engine.train_quality import QualitySettings
from gpu_service.engine.train_wandb import TrainingTracker, WandbTrainingConfig
from gpu_service.engine.training import previous_result, train_version
from gpu_service.intake import collect_images
from gpu_service.intake.policy import intake_policy
from gpu_service.registry import ModelRegistry
from gpu_service.schemas import TrainRequest, TrainResult
from gpu_service.settings import Settings


def run_training_job(
    settings: Settings, request: TrainRequest, on_progress: TrainProgressCallback | None = None,
    registry: ModelRegistry | None = None, stop: threading.Event | None = None,
) -> TrainResult:
    """Idempotent by job id: a finished job returns its version, finishing its activation if a crash cut it
    short; a crashed training resumes from its checkpoint.

    The images are checked by the intake rules again here (the bot already did, but the GPU side never
    trusts bytes it did not check) and normalised the same way whichever front end sent them. A job that
    already produced its version returns it before any image is fetched: its links may have expired.
    Setting `stop` ends the training at its next step or stage with TrainingCancelled, publishing nothing.
    """
    registry = registry or ModelRegistry(settings.registry_dir)
    finished = registry.resume_job(request.subject, request.job_id)
    if finished is not None:
        return previous_result(registry, finished, request.job_id)
    intake = asyncio.run(collect_images(request.images, intake_policy(settings)))
    config = training_config(
        max_steps=settings.TRAIN_STEPS, num_class_images=settings.TRAIN_CLASS_IMAGES,
        checkpoint_every=settings.TRAIN_CHECKPOINT_EVERY,
    )
    token = settings.HUGGINGFACE_TOKEN
    tracker = TrainingTracker(WandbTrainingConfig.from_settings(settings))
    result = train_version(
        request, [image.png for image in intake.images], base_model=settings.BASE_MODEL,
        registry=registry, config=config,
        instance_prefix=settings.INSTANCE_PREFIX, instance_postfix=settings.INSTANCE_POSTFIX,
        class_cache_dir=settings.class_cache_dir, on_progress=on_progress, tracker=tracker,
        token=token.get_secret_value() if token else None, quality=quality_settings(settings), stop=stop,
    )
    rejected = tuple(f"{rejection.name}: {rejection.reason}" for rejection in intake.rejected)
    return result.model_copy(update={"rejected_images": result.rejected_images + rejected})


def quality_settings(settings: Settings) -> QualitySettings | None:
    """What the post-training report uses; None when QUALITY_ENABLED is off."""
    if not settings.QUALITY_ENABLED:
        return None
    return QualitySettings(
        clip_model=settings.QUALITY_CLIP_MODEL, dino_model=settings.QUALITY_DINO_MODEL,
        samples=settings.QUALITY_SAMPLES,
    )
