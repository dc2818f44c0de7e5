"""W&B for training: one run per job (job_type "train", named by the job id) and the LoRA as a model artifact.

W&B is a mirror, never a dependency: the first failure is logged once as a warning and every later call
does nothing, so training goes on. wandb is imported only when a run starts.

Artifact choice: the version is published first, then the LoRA is logged as `lora-<subject>` (the key's
W&B spelling, `artifact_slug`: a server's own `dog@700` is `lora-dog.g700`) with the
aliases `<job id>`, `version-<n>` and `live` (a training publishes its version live; W&B keeps an alias on
one version of an artifact, so `live` leaves the previous one). The version's metadata records
`<project>/lora-<subject>:<job id>` (known before publishing); should logging the artifact fail afterwards,
that reference names nothing.

Lineage: the training photos are the dataset artifact `photos-<subject>`, which the run uses; W&B then shows
the LoRA the run logs as made from them. wandb refuses `use_artifact` offline: there the photos are logged
as the run's own artifact, kept for `wandb sync`, without the lineage edge. A rollback moves `live` with
`move_live_alias` (W&B's public API, online only).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_service.registry import METADATA_NAME, ModelRegistry, VersionMetadata
from gpu_service.settings import Settings
from gpu_service.subjects import artifact_slug

log = logging.getLogger(__name__)
LIVE = "live"  # the alias of the LoRA artifact version that serves
API_TIMEOUT_S = 20


@dataclass(frozen=True)
class WandbTrainingConfig:
    project: str
    mode: str = "offline"  # "online", "offline" or "disabled"
    directory: Path | None = None  # runs go to <directory>/wandb; None: wandb's default (WANDB_DIR)
    entity: str | None = None
    api_key: str | None = field(default=None, repr=False)  # given to the run only; never written anywhere

    @classmethod
    def from_settings(cls, settings: Settings) -> WandbTrainingConfig:
        key = settings.WANDB_API_KEY
        return cls(
            project=settings.PROJECT_NAME, mode=settings.wandb_mode, directory=settings.wandb_dir,
            entity=settings.WANDB_ENTITY, api_key=key.get_secret_value() if key else None,
        )


class TrainingTracker:
    """Logs one training job to W&B. Every method is safe to call whatever state W&B is in."""

    def __init__(self, config: WandbTrainingConfig) -> None:
        self.config = config
        self._run = None
        self._wandb = None
        self._failed = config.mode == "disabled"

    @property
    def active(self) -> bool:
        return self._run is not None and not self._failed

    @property
    def url(self) -> str | None:
        """The run's page; offline, where its files are (for `wandb sync`)."""
        if not self.active:
            return None
        return self._guard("read the run url", lambda: self._run.url or str(Path(self._run.dir).parent))

    def start(self, job_id: str, config: dict[str, Any]) -> None:
        self._guard("start a run", lambda: self._start(job_id, config))

    def artifact_ref(self, subject: str, job_id: str) -> str | None:
        """What the version's metadata records as its W&B artifact; None when nothing is logged."""
        if not self.active:
            return None
        owner = f"{self.config.entity}/" if self.config.entity else ""
        return f"{owner}{self.config.project}/lora-{artifact_slug(subject)}:{job_id}"

    def log_step(self, step: int, loss: float, lr: float) -> None:
        self._log({"train/loss": loss, "train/lr": lr}, step)

    def log_images(self, key: str, pngs: Sequence[bytes], captions: Sequence[str], step: int) -> None:
        if self.active:
            self._guard(f"log {key}", lambda: self._run.log({key: self._images(pngs, captions)}, step=step))

    def log_quality(self, quality: dict, rows: Sequence[dict], card: bytes, step: int) -> None:
        """The three scores (and the base model's, the verdict, the published step) in the run's summary; every
        sample in a table (prompt, seed, model, image, scores); the report card as an image."""
        self._guard("log the quality report", lambda: self._log_quality(quality, rows, card, step))

    def log_dataset(self, photos: Sequence[bytes], *, subject: str, job_id: str) -> None:
        """The training photos (PNG) as the dataset artifact this run uses (see the module docstring)."""
        self._guard("log the training photos", lambda: self._log_dataset(photos, subject, job_id))

    def log_model(self, weights: Path, *, subject: str, job_id: str, version: int, metadata: dict) -> None:
        self._guard("log the model artifact", lambda: self._log_model(weights, subject, job_id, version, metadata))

    def finish(self, *, failed: bool = False) -> None:
        if self._run is not None:
            run, self._run = self._run, None
            try:
                run.finish(exit_code=1 if failed else 0)
            except Exception as error:
                self._warn("finish the run", error)

    # Helpers

    def _start(self, job_id: str, config: dict[str, Any]) -> None:
        import wandb

        self._wandb = wandb
        directory = self.config.directory
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=self.config.project, entity=self.config.entity, mode=self.config.mode,
            dir=str(directory) if directory is not None else None, job_type="train", name=job_id,
            config=config, reinit="create_new",
            settings=wandb.Settings(console="off", silent=True, api_key=self.config.api_key),
        )

    def _log(self, values: dict[str, Any], step: int) -> None:
        if self.active:
            self._guard("log metrics", lambda: self._run.log(values, step=step))

    def _images(self, pngs: Sequence[bytes], captions: Sequence[str]) -> list:
        from PIL import Image

        images = []
        for png, caption in zip(pngs, captions, strict=True):
            with Image.open(io.BytesIO(png)) as image:
                images.append(self._wandb.Image(image.convert("RGB"), caption=caption))
        return images

    def _log_quality(self, quality: dict, rows: Sequence[dict], card: bytes, step: int) -> None:
        if not self.active:
            return
        scores = ("dino", "clip_i", "clip_t")
        summary = {f"quality/{name}": quality[name] for name in scores}
        summary |= {f"quality/base_{name}": quality["base"][name] for name in scores}
        summary |= {"quality/verdict": quality["verdict"], "quality/step": quality.get("step")}
        self._run.summary.update(summary)
        table = self._wandb.Table(columns=["prompt", "seed", "model", "image", *scores])
        for row in rows:
            image = self._images([row["png"]], [row["prompt"]])[0] if row["png"] is not None else None
            table.add_data(row["prompt"], row["seed"], row["model"], image, *(row[name] for name in scores))
        card_image = self._images([card], ["report card"])[0]
        self._run.log({"quality/samples": table, "quality/report_card": card_image}, step=step)

    def _log_dataset(self, photos: Sequence[bytes], subject: str, job_id: str) -> None:
        if not self.active:
            return
        artifact = self._wandb.Artifact(
            name=f"photos-{artifact_slug(subject)}", type="dataset",
            metadata={"job_id": job_id, "photos": len(photos)},
        )
        for index, png in enumerate(photos):
            with artifact.new_file(f"photo-{index:02d}.png", mode="xb") as file:
                file.write(png)
        if self._run.offline:
            log.info("W&B is offline: the training photos are logged without their lineage to the LoRA")
            self._run.log_artifact(artifact, aliases=[job_id])
        else:
            self._run.use_artifact(artifact, aliases=[job_id])

    def _log_model(self, weights: Path, subject: str, job_id: str, version: int, metadata: dict) -> None:
        if not self.active:
            return
        artifact = self._wandb.Artifact(
            name=f"lora-{artifact_slug(subject)}", type="model", metadata=metadata | {"version": version, "job_id": job_id},
        )
        artifact.add_file(str(weights))
        self._run.log_artifact(artifact, aliases=[job_id, f"version-{version}", LIVE])

    def _guard(self, action: str, work):
        if self._failed:
            return None
        try:
            return work()
        except Exception as error:
            self._warn(action, error)
            return None

    def _warn(self, action: str, error: Exception) -> None:
        if not self._failed:
            log.warning("W&B failed to %s (%s: %s); training goes on without it", action,
                        error.__class__.__name__, error)
        self._failed = True


def move_live_alias(config: WandbTrainingConfig, registry: ModelRegistry, subject: str, version: int) -> bool:
    """Give the alias `live` to the LoRA artifact of `version` (its metadata's `wandb_artifact`), which takes
    it from the subject's previous live version. Call it after an activation (a rollback). Only online:
    offline runs have nothing on W&B to move. A failure is logged, never raised (W&B is a mirror).
    True when the alias was moved or already there."""
    path = registry.version_dir(subject, version) / METADATA_NAME
    ref = VersionMetadata.model_validate_json(path.read_bytes()).wandb_artifact
    if config.mode != "online" or not ref:
        log.info("W&B %s: the live alias stays where it was (%s v%d: %s)", config.mode, subject, version,
                 ref or "no artifact")
        return False
    try:
        import wandb

        artifact = wandb.Api(api_key=config.api_key, timeout=API_TIMEOUT_S).artifact(ref, type="model")
        if LIVE not in artifact.aliases:
            artifact.aliases.append(LIVE)
            artifact.save()
        return True
    except Exception as error:
        log.warning("W&B failed to move the live alias to %s (%s: %s)", ref, error.__class__.__name__, error)
        return False
