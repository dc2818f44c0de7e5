"""Hyperparameters of one DreamBooth-LoRA training, validated before any work starts.

Pydantic only (no torch), so the bot side can build and check a config too. Defaults follow diffusers'
`examples/dreambooth/train_dreambooth_lora.py` (constant lr, prior loss weight 1, 100 class images,
AdamW with weight decay 1e-2, grad norm clipped at 1), with rank 8 and lr 1e-4 as this product's choice.
"""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpu_service.errors import InvalidRequest

PHRASE_FIELD = "phrase"
DEFAULT_VALIDATION_PROMPTS = (
    "a photo of a {phrase}",
    "a watercolor painting of a {phrase}",
    "a {phrase} on the beach at sunset",
)
MAX_VALIDATION_PROMPTS = 4
MAX_RESOLUTION_FACTOR = 2  # a training side may be at most twice the model's native side


class TrainingConfig(BaseModel):
    """Every knob of one training. Frozen; `hyperparameters()` is what a version records."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resolution: int | None = Field(None, ge=64, le=2048)  # None: the model's native side (512 for SD1.5)
    max_steps: int = Field(500, ge=1, le=5000)  # optimizer steps
    learning_rate: float = Field(1e-4, gt=0, le=1)
    lora_rank: int = Field(8, ge=4, le=128)
    lora_alpha: int | None = Field(None, ge=1, le=1024)  # None: equal to the rank (scale 1)
    train_text_encoder: bool = False
    text_encoder_lr: float = Field(5e-5, gt=0, le=1)
    with_prior_preservation: bool = True
    prior_loss_weight: float = Field(1.0, ge=0, le=100)
    num_class_images: int = Field(100, ge=1, le=1000)
    class_inference_steps: int = Field(25, ge=1, le=100)
    batch_size: int = Field(1, ge=1, le=32)
    gradient_accumulation: int = Field(1, ge=1, le=64)
    checkpoint_every: int = Field(100, ge=1, le=5000)
    checkpoints_kept: int = Field(2, ge=1, le=10)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    validation_prompts: tuple[str, ...] = Field(DEFAULT_VALIDATION_PROMPTS, max_length=MAX_VALIDATION_PROMPTS)
    validation_steps: int = Field(25, ge=1, le=100)
    validation_guidance: float = Field(7.5, ge=0, le=30)
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    lr_warmup_steps: int = Field(0, ge=0, le=5000)
    max_grad_norm: float = Field(1.0, gt=0, le=1000)
    adam_weight_decay: float = Field(1e-2, ge=0, le=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"  # auto: bf16/fp16 on CUDA, fp32 on CPU

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError(f"must be a multiple of 8, got {value}")
        return value

    @field_validator("validation_prompts")
    @classmethod
    def _templates(cls, prompts: tuple[str, ...]) -> tuple[str, ...]:
        for prompt in prompts:
            fields = {name for _, name, _, _ in string.Formatter().parse(prompt) if name is not None}
            if fields != {PHRASE_FIELD}:
                raise ValueError(f"each prompt needs exactly the placeholder {{{PHRASE_FIELD}}}: {prompt!r}")
        return prompts

    @model_validator(mode="after")
    def _warmup(self) -> TrainingConfig:
        if self.lr_warmup_steps and self.lr_scheduler == "constant":
            raise ValueError("lr_warmup_steps needs lr_scheduler 'constant_with_warmup', 'linear' or 'cosine'")
        if self.lr_warmup_steps >= self.max_steps and self.lr_warmup_steps:
            raise ValueError(f"lr_warmup_steps ({self.lr_warmup_steps}) must be below max_steps ({self.max_steps})")
        return self

    @property
    def effective_lora_alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else self.lora_rank

    def validation_prompts_for(self, instance_phrase: str) -> list[str]:
        return [prompt.format(**{PHRASE_FIELD: instance_phrase}) for prompt in self.validation_prompts]

    def hyperparameters(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def training_config(**values: Any) -> TrainingConfig:
    """Build a config; a bad value raises InvalidRequest naming every offending field."""
    try:
        return TrainingConfig(**values)
    except ValidationError as error:
        raise InvalidRequest(_describe(error)) from None


def with_steps(config: TrainingConfig, steps: int | None) -> TrainingConfig:
    """The config with a request's step count, validated again (the warm-up must still fit)."""
    if steps is None or steps == config.max_steps:
        return config
    return training_config(**(config.model_dump() | {"max_steps": steps}))


def check_resolution(config: TrainingConfig, native: int) -> int:
    """The side to train at: the config's, or the model's own; refuses sides the model cannot take."""
    side = config.resolution or native
    if side > native * MAX_RESOLUTION_FACTOR:
        raise InvalidRequest(
            f"resolution {side} is too large for this model: at most {native * MAX_RESOLUTION_FACTOR} "
            f"(its native side is {native})"
        )
    return side


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "config"
        parts.append(f"{field}: {item['msg']}")
    return "Invalid training config: " + "; ".join(parts)
