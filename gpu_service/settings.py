"""The product's settings: one pydantic-settings model, read once at the entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SUBJECT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"  # what a member types
# A registry key: the name, or `name@<guild id>` for a server's own subject (gpu_service/subjects.py).
SUBJECT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}(@[0-9]{1,20})?$"


class Settings(BaseSettings):
    """Every setting of the product and the GPU service. Names are the environment's names."""

    model_config = SettingsConfigDict(
        env_file=(".env", ".env.secrets"),
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        populate_by_name=True,
    )

    PROJECT_NAME: str = "stable-qwerty"
    IMAGES_FILE_URL: str = ""
    INSTANCE_PHRASE: str = "qwerty dog"
    INSTANCE_PREFIX: str = "a photo of a"
    INSTANCE_POSTFIX: str = ""
    CLASS_PHRASE: str = "dog"
    DEFAULT_SUBJECT: str = Field("qwerty", pattern=SUBJECT_NAME_PATTERN)
    PROMPT_PREFIX: str = "a gorgeous painting of a"
    PROMPT_POSTFIX: str = "in a psychedelic 1970s style"

    HUGGINGFACE_TOKEN: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HUGGINGFACE_TOKEN", "HF_TOKEN")
    )
    WANDB_API_KEY: SecretStr | None = None
    WANDB_MODE: Literal["online", "offline", "disabled"] | None = None
    WANDB_ENTITY: str | None = None
    WANDB_DIR: Path | None = None  # W&B's own variable: where its `wandb/` run folders go

    BASE_MODEL: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    GPU_BACKEND: Literal["local", "modal"] = "local"
    DATA_DIR: Path = Path("./data")
    OUTPUTS_DIR: Path = Path("./outputs")

    ALLOW_PRIVATE_URLS: bool = False
    MAX_IMAGE_BYTES: int = Field(20 * 1024 * 1024, gt=0)
    INTAKE_TIMEOUT_S: float = Field(60.0, gt=0)

    TRAIN_STEPS: int = Field(500, ge=1, le=5000)
    # Trainings at once in the whole deployment: checked by the bot (its job store) and by the GPU side
    # (Modal: one Dict slot each), so a second bot process or a stale job cannot exceed it.
    MAX_CONCURRENT_TRAININGS: int = Field(1, ge=1)
    TRAIN_CLASS_IMAGES: int = Field(100, ge=0, le=1000)
    TRAIN_CHECKPOINT_EVERY: int = Field(100, ge=1)

    QUALITY_ENABLED: bool = True
    QUALITY_CLIP_MODEL: str = "openai/clip-vit-base-patch32"
    QUALITY_DINO_MODEL: str = "facebook/dino-vits16"
    QUALITY_SAMPLES: int = Field(4, ge=1, le=16)

    GPU_TYPE: str = "A100"
    MODAL_SCALEDOWN_WINDOW_S: int = Field(600, ge=2)
    MODAL_MIN_CONTAINERS: int = Field(0, ge=0)
    MODAL_CALL_TIMEOUT_S: float = Field(180.0, gt=0)
    # The first call to a cold service also waits for a container to start and load the weights.
    MODAL_COLD_START_TIMEOUT_S: float = Field(280.0, gt=0)

    @property
    def wandb_mode(self) -> str:
        """W&B logs online only when a key is set; otherwise it writes offline runs under DATA_DIR."""
        if self.WANDB_MODE is not None:
            return self.WANDB_MODE
        return "online" if self.WANDB_API_KEY else "offline"

    @property
    def registry_dir(self) -> Path:
        return self.DATA_DIR / "registry"

    @property
    def wandb_dir(self) -> Path:
        """WANDB_DIR when it is set (W&B's convention), else DATA_DIR/wandb."""
        return self.WANDB_DIR if self.WANDB_DIR is not None else self.DATA_DIR / "wandb"

    @property
    def class_cache_dir(self) -> Path:
        """Prior-preservation images, cached per base model and class phrase. Inside the registry so that
        on Modal they live on the registry Volume, not on a container's temporary disk."""
        return self.registry_dir / "class-images"
