"""The training step and loop: noise-prediction MSE with a weighted prior loss, checkpointed and resumable.

Every random draw of the loop (VAE latent samples, noise, timesteps) comes from one CPU `torch.Generator`
whose state is checkpointed, and the data order is a function of (seed, sample counter), so a resumed run
ends with the same weights as an uninterrupted one (bit for bit on CPU).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from gpu_service.engine.checkpoints import Checkpoint, checkpoints, discard_checkpoints, save_checkpoint
from gpu_service.engine.train_config import TrainingConfig
from gpu_service.engine.train_data import TrainData, encode_latent_params, sample_index
from gpu_service.engine.train_model import (
    Models,
    Precision,
    load_trainable_state,
    make_lr_scheduler,
    make_optimizer,
    trainable_state,
)
from gpu_service.errors import TrainingFailed

log = logging.getLogger(__name__)

class TrainingCancelled(TrainingFailed):
    """The caller asked the training to stop (it gave up waiting): it stops between steps, publishing nothing."""


def stop_if_asked(stop: threading.Event | None, job_id: str) -> None:
    """Raise TrainingCancelled once `stop` is set; the engine calls it between steps and between stages."""
    if stop is not None and stop.is_set():
        raise TrainingCancelled(f"Training {job_id} was stopped before it finished; nothing was published.")


RECENT_LOSSES = 20  # final_loss is the mean over the last this-many steps
INSTANCE_STREAM, CLASS_STREAM = 0, 1


@dataclass
class Trainer:
    models: Models
    data: TrainData
    config: TrainingConfig
    precision: Precision
    prediction_type: str
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    step: int = 0
    recent_losses: list[float] = field(default_factory=list)

    @property
    def lr(self) -> float:
        return float(self.lr_scheduler.get_last_lr()[0])

    @property
    def final_loss(self) -> float | None:
        return sum(self.recent_losses) / len(self.recent_losses) if self.recent_losses else None


def build_trainer(
    models: Models, data: TrainData, groups: list[dict], config: TrainingConfig, precision: Precision,
    *, prediction_type: str,
) -> Trainer:
    optimizer = make_optimizer(groups, config, precision)
    return Trainer(
        models=models, data=data, config=config, precision=precision, prediction_type=prediction_type,
        optimizer=optimizer, lr_scheduler=make_lr_scheduler(optimizer, config),
        scaler=torch.amp.GradScaler(precision.device.type, enabled=precision.use_grad_scaler),
        generator=torch.Generator().manual_seed(config.seed),
    )


def batch_counters(config: TrainingConfig, step: int, micro: int) -> list[int]:
    """Sample counters of micro-batch `micro` of optimizer step `step` (0-based)."""
    first = (step * config.gradient_accumulation + micro) * config.batch_size
    return list(range(first, first + config.batch_size))


def _sample_latents(trainer: Trainer, cached, pixels, indices: list[int], generator) -> torch.Tensor:
    """Latents drawn from each image's VAE posterior (cached parameters, or encoded now)."""
    if cached is not None:
        params = cached[indices]
    else:
        params = encode_latent_params(
            trainer.models.vae, pixels[indices], device=trainer.precision.device,
            dtype=trainer.precision.weight_dtype,
        )
    mean, logvar = params.chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
    draw = torch.randn(mean.shape, generator=generator).to(mean.device)
    return (mean + std * draw) * trainer.models.latent_scale


def _embeddings(trainer: Trainer, cached, ids: torch.Tensor, batch: int) -> torch.Tensor:
    """Prompt embeddings: cached when the text encoder is frozen, computed (with grad if trained) otherwise."""
    if cached is not None:
        return cached.expand(batch, -1, -1)
    grad = trainer.config.train_text_encoder
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return trainer.models.text_encoder(ids.to(trainer.precision.device))[0].expand(batch, -1, -1)


def _inputs(trainer: Trainer, counters: list[int], generator) -> tuple[torch.Tensor, torch.Tensor]:
    data, seed = trainer.data, trainer.config.seed
    indices = [sample_index(seed, c, data.instance_count, INSTANCE_STREAM) for c in counters]
    latents = [_sample_latents(trainer, data.instance_latents, data.instance_pixels, indices, generator)]
    embeds = [_embeddings(trainer, data.instance_embeds, data.instance_ids, len(counters))]
    if data.with_prior:
        indices = [sample_index(seed, c, data.class_count, CLASS_STREAM) for c in counters]
        latents.append(_sample_latents(trainer, data.class_latents, data.class_pixels, indices, generator))
        embeds.append(_embeddings(trainer, data.class_embeds, data.class_ids, len(counters)))
    return torch.cat(latents), torch.cat(embeds)


def compute_loss(trainer: Trainer, counters: list[int], generator: torch.Generator) -> torch.Tensor:
    """MSE between the UNet's prediction and its target (noise, or velocity for v-prediction models)."""
    scheduler, device = trainer.models.noise_scheduler, trainer.precision.device
    with trainer.precision.autocast:
        latents, embeds = _inputs(trainer, counters, generator)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        steps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
        steps = steps.to(device)
        noisy = scheduler.add_noise(latents, noise, steps)
        target = noise if trainer.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, steps)
        dtype = trainer.precision.weight_dtype
        prediction = trainer.models.unet(noisy.to(dtype), steps, embeds.to(dtype), return_dict=False)[0]
    prediction, target = prediction.float(), target.float()
    if not trainer.data.with_prior:
        return F.mse_loss(prediction, target)
    prediction, prior_prediction = prediction.chunk(2)
    target, prior_target = target.chunk(2)
    prior = F.mse_loss(prior_prediction, prior_target)
    return F.mse_loss(prediction, target) + trainer.config.prior_loss_weight * prior


@torch.no_grad()
def evaluate_loss(trainer: Trainer, counters: list[int], seed: int = 1234) -> float:
    """The loss on a fixed batch with fixed noise: comparable before and after training."""
    return compute_loss(trainer, counters, torch.Generator().manual_seed(seed)).item()


def train_step(trainer: Trainer) -> float:
    """One optimizer step over `gradient_accumulation` micro-batches; returns the mean loss."""
    config = trainer.config
    trainer.optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro in range(config.gradient_accumulation):
        loss = compute_loss(trainer, batch_counters(config, trainer.step, micro), trainer.generator)
        trainer.scaler.scale(loss / config.gradient_accumulation).backward()
        total += loss.item() / config.gradient_accumulation
    trainer.scaler.unscale_(trainer.optimizer)
    torch.nn.utils.clip_grad_norm_(trainer.models.trainable, config.max_grad_norm)
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    trainer.lr_scheduler.step()
    trainer.step += 1
    trainer.recent_losses = [*trainer.recent_losses, total][-RECENT_LOSSES:]
    return total


StepHook = Callable[[int, float, bool], None]  # (step, loss, checkpoint saved)


def run_training(
    trainer: Trainer, *, staging: Path, fingerprint: str, on_step: StepHook | None = None,
    stop: threading.Event | None = None, job_id: str = "",
) -> None:
    """Steps until max_steps, checkpointing every `checkpoint_every` steps and at the last one.

    `on_step` runs after the step's checkpoint is written; an exception from it stops the training,
    and a later run resumes from the newest checkpoint. `stop`, once set, ends it before the next step
    with TrainingCancelled.
    """
    config = trainer.config
    while trainer.step < config.max_steps:
        stop_if_asked(stop, job_id)
        loss = train_step(trainer)
        due = trainer.step % config.checkpoint_every == 0 or trainer.step == config.max_steps
        if due:
            save_trainer_checkpoint(trainer, staging, fingerprint)
        if on_step is not None:
            on_step(trainer.step, loss, due)


def save_trainer_checkpoint(trainer: Trainer, staging: Path, fingerprint: str) -> Checkpoint:
    state = {
        "optimizer": trainer.optimizer.state_dict(),
        "lr_scheduler": trainer.lr_scheduler.state_dict(),
        "grad_scaler": trainer.scaler.state_dict(),
        "generator": trainer.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    info = {
        "fingerprint": fingerprint, "recent_losses": trainer.recent_losses,
        "python_random": random.getstate(),
    }
    return save_checkpoint(
        staging, trainer.step, lora=trainable_state(trainer.models), state=state, info=info,
        keep=trainer.config.checkpoints_kept,
    )


def resume(trainer: Trainer, staging: Path, fingerprint: str) -> int | None:
    """Restore the newest usable checkpoint of this very training; returns its step, None if none.

    Checkpoints of a different training (other hyperparameters or images under the same job id) are
    discarded, not resumed.
    """
    found = checkpoints(staging)
    if any(checkpoint.fingerprint() != fingerprint for checkpoint in found):
        log.warning("discarding checkpoints in %s: they belong to a different training", staging)
        discard_checkpoints(staging)
        return None
    for checkpoint in found:
        try:
            restore(trainer, checkpoint)
            return checkpoint.step
        except Exception as error:  # a damaged file: fall back to the previous checkpoint
            log.warning("cannot resume from %s (%s); trying an older one", checkpoint.path, error)
    return None


def restore(trainer: Trainer, checkpoint: Checkpoint) -> None:
    lora, state, info = checkpoint.load()
    load_trainable_state(trainer.models, lora)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.lr_scheduler.load_state_dict(state["lr_scheduler"])
    if state["grad_scaler"]:
        trainer.scaler.load_state_dict(state["grad_scaler"])
    trainer.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    version, internal, gauss = info["python_random"]
    random.setstate((version, tuple(internal), gauss))
    trainer.step = info["step"]
    trainer.recent_losses = list(info["recent_losses"])
