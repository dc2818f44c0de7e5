"""The contract between the bot side and the GPU service. Pydantic only: this module imports no torch."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gpu_service.settings import SUBJECT_PATTERN
from gpu_service.subjects import subject_name, subject_owner

MAX_SIDE = 1024
MAX_IMAGES_PER_REQUEST = 4
MAX_SEED = 2**32 - 1
MAX_TEXT = 1000
MAX_INIT_IMAGE_BYTES = 20 * 1024 * 1024
# Picture shapes a member picks by name; the engine turns one into a size from the model's native one.
Aspect = Literal["square", "portrait", "landscape", "wide"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _multiple_of_8(name: str, value: int | None) -> int | None:
    if value is not None and value % 8:
        raise ValueError(f"{name} must be a multiple of 8, got {value}")
    return value


class GenerateRequest(_Frozen):
    """One /qwerty: `<prefix> <instance phrase> <postfix>`, rendered `count` times."""

    # The descriptions are what members read: Discord's option hints, the shell's help, the CLI's --help.
    prompt_prefix: str = Field(max_length=MAX_TEXT, description="Words before the subject, e.g. 'a gorgeous painting of a'")
    prompt_postfix: str = Field(
        "", max_length=MAX_TEXT, description="Words after the subject, e.g. 'in a psychedelic 1970s style'"
    )
    subject: str = Field(pattern=SUBJECT_PATTERN, description="Which trained subject to draw")
    # The version the caller believes is live; None means "whatever is active". Lets a warm container
    # notice it is behind (see gpu_service.engine.generator).
    subject_version: int | None = Field(None, ge=1)
    negative_prompt: str = Field("", max_length=MAX_TEXT, description="What the pictures should not show")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Start from this seed for repeatable pictures (image i gets seed + i)"
    )
    count: int = Field(1, ge=1, le=MAX_IMAGES_PER_REQUEST, description=f"How many pictures (1-{MAX_IMAGES_PER_REQUEST})")
    steps: int = Field(25, ge=1, le=100, description="Denoising steps (1-100): more is slower and finer")
    guidance: float = Field(7.5, ge=0.0, le=30.0, description="How closely to follow the prompt (0-30)")
    aspect: Aspect | None = Field(
        None, description="Picture shape: square, portrait (2:3), landscape (3:2) or wide (16:9)"
    )
    width: int | None = Field(None, ge=64, le=MAX_SIDE)
    height: int | None = Field(None, ge=64, le=MAX_SIDE)
    # Image-to-image ("Variations"): a PNG to start from and how far to move away from it.
    init_image: bytes | None = Field(None, max_length=MAX_INIT_IMAGE_BYTES, repr=False)
    strength: float = Field(0.6, gt=0.0, le=1.0)

    @field_validator("width", "height")
    @classmethod
    def _sides_multiple_of_8(cls, value: int | None, info) -> int | None:
        return _multiple_of_8(info.field_name, value)

    @model_validator(mode="after")
    def _one_way_to_size(self) -> GenerateRequest:
        if self.aspect is not None and (self.width is not None or self.height is not None):
            raise ValueError("give either aspect or width/height, not both")
        return self


class GeneratedImage(_Frozen):
    index: int
    seed: int
    png: bytes | None = Field(None, repr=False)
    withheld: bool = False  # the safety checker flagged it: no pixels are sent


class Timings(_Frozen):
    load_s: float = 0.0
    inference_s: float = 0.0
    total_s: float = 0.0


class GenerateResult(_Frozen):
    prompt: str
    negative_prompt: str
    images: tuple[GeneratedImage, ...]
    model: str
    subject: str
    version: int | None  # None: the subject has no trained version and the base model answered
    base_fallback: bool
    # The requested version whose LoRA file was damaged; `version` is the earlier one that answered instead.
    damaged_version: int | None = None
    steps: int
    guidance: float
    width: int
    height: int
    timings: Timings = Timings()

    @property
    def withheld_count(self) -> int:
        return sum(image.withheld for image in self.images)


class GenerationProgress(_Frozen):
    step: int
    total_steps: int
    preview_png: bytes | None = Field(None, repr=False)
    # Set instead of a step while the GPU service starts a container: about how many seconds that takes.
    warming_s: float | None = None


class ImageSource(_Frozen):
    """One training image as the caller has it: a URL, or bytes (a Discord attachment)."""

    url: str | None = None
    data: bytes | None = Field(None, repr=False)
    name: str = ""


class TrainRequest(_Frozen):
    job_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    subject: str = Field(pattern=SUBJECT_PATTERN, description="Name of the subject to train (default: the server's subject)")
    instance_phrase: str = Field(
        min_length=1, max_length=200, description="The words that name the subject in prompts, e.g. 'qwerty dog'"
    )
    class_phrase: str = Field(min_length=1, max_length=200, description="What kind of thing the subject is, e.g. 'dog'")
    images: tuple[ImageSource, ...] = Field(min_length=1, max_length=21)
    steps: int | None = Field(None, ge=1, le=5000, description="Training steps (default: the trainer's)")
    requested_by: str = ""


class TrainProgress(_Frozen):
    job_id: str
    state: Literal["queued", "fetching", "training", "saving", "done", "failed"]
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    lr: float | None = None
    eta_s: float | None = None
    message: str = ""
    # The backend's handle for re-attaching after a restart (a Modal FunctionCall id); None locally.
    call_id: str | None = None


class QualityScores(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    dino: float
    clip_i: float
    clip_t: float


VERDICT_ADVICE = {
    "ok": "Looks good: it learned the subject and still follows prompts.",
    "overfit": "Overfit: it copies the training photos and stops following prompts. "
    "Try fewer steps, or add more varied photos.",
    "underfit": "Underfit: it has barely learned the subject. Try more steps.",
}


class QualityReport(QualityScores):
    """A version's DreamBooth scores (DINO, CLIP-I, CLIP-T), the base model's on the same prompts and seeds,
    and the verdict. Unknown keys are ignored so older readers list versions newer trainers scored."""

    base: QualityScores
    verdict: Literal["ok", "underfit", "overfit"]
    prompts: tuple[str, ...] = ()
    models: dict[str, str] = {}
    step: int | None = None  # the checkpoint that was published

    @property
    def advice(self) -> str:
        return VERDICT_ADVICE[self.verdict]


class ModelVersion(_Frozen):
    subject: str
    version: int
    instance_phrase: str
    class_phrase: str
    base_model: str
    created_at: datetime
    trained_by: str = ""
    steps: int = 0
    final_loss: float | None = None
    wandb_url: str | None = None
    active: bool = False
    quality: QualityReport | None = None

    @property
    def name(self) -> str:
        """The subject as members know it (`subject` is its registry key, gpu_service/subjects.py)."""
        return subject_name(self.subject)

    @property
    def owner(self) -> str:
        """The guild id that owns the subject, or "" for a global one."""
        return subject_owner(self.subject)


class TrainResult(_Frozen):
    job_id: str
    version: ModelVersion
    validation_images: tuple[bytes, ...] = Field((), repr=False)
    rejected_images: tuple[str, ...] = ()
    report_card: bytes | None = Field(None, repr=False)  # PNG; None when quality scoring was off or failed


class ServiceStatus(_Frozen):
    backend: str
    reachable: bool
    warm: bool
    detail: str = ""
    # Versions whose LoRA file failed its check, for example "qwerty v3: checksum mismatch".
    bad_versions: tuple[str, ...] = ()
    last_cold_start_s: float | None = None  # how long the last measured cold start took (Modal)
