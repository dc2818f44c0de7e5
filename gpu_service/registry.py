"""A versioned registry of trained LoRA weights on a directory (a Modal Volume, or DATA_DIR/registry).

Layout under `root`:

    subjects/<subject>/versions/<n>/       complete versions only: weights + metadata.json
    subjects/<subject>/active              the live version number, replaced atomically
    subjects/<subject>/last_version        the highest number ever given out, so numbers are never reused
    subjects/<subject>/staging/<job_id>/   a training job's workspace; readers never look here

A version published to go live carries a hidden `.activation-pending` file until `active` points at it:
a crash or a full disk between the two leaves the marker, and the job's re-run finishes the activation.

A version appears by one `os.rename` of a finished hidden directory, and disappears by one rename to a
hidden name before it is removed, so a reader sees a version whole or not at all. Hidden entries
(leading '.') are ignored by every listing.

Writers in one process are serialized by a lock on the instance, so share one `ModelRegistry` per root.
Writers in different processes must be serialized by their caller (one training per subject at a time);
should two collide anyway, `os.rename` onto a non-empty version directory fails rather than overwrites.

Pydantic and the standard library only: the bot process imports this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from gpu_service.errors import InvalidRequest, SubjectNotFound
from gpu_service.schemas import ModelVersion, QualityReport
from gpu_service.settings import SUBJECT_PATTERN

log = logging.getLogger(__name__)

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
METADATA_NAME = "metadata.json"
ACTIVATION_PENDING = ".activation-pending"
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # the same rule as TrainRequest.job_id
_VERSION_NAME = re.compile(r"[1-9][0-9]*")  # plain integers only: "01" or "1.tmp" are not versions


class VersionMetadata(BaseModel):
    """metadata.json of one version: what was trained, from what, by whom."""

    # Unknown keys are ignored so an older reader still lists versions a newer trainer wrote.
    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    subject: str = Field(pattern=SUBJECT_PATTERN)
    instance_phrase: str
    class_phrase: str
    base_model: str
    base_revision: str | None = None
    hyperparameters: dict[str, Any] = {}
    steps: int = Field(0, ge=0)
    final_loss: float | None = None
    image_sha256: list[str] = []
    created_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    trained_by: str = ""
    wandb_url: str | None = None
    wandb_artifact: str | None = None
    # Written at publish so a reader can tell a damaged file; versions published without them are trusted.
    weights_sha256: str | None = None
    weights_bytes: int | None = Field(None, ge=0)
    quality: dict[str, Any] | None = None  # gpu_service.schemas.QualityReport's fields

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def to_version(self, number: int, *, active: bool) -> ModelVersion:
        return ModelVersion(
            subject=self.subject,
            version=number,
            instance_phrase=self.instance_phrase,
            class_phrase=self.class_phrase,
            base_model=self.base_model,
            created_at=self.created_at,
            trained_by=self.trained_by,
            steps=self.steps,
            final_loss=self.final_loss,
            wandb_url=self.wandb_url,
            active=active,
            quality=self._quality_report(),
        )

    def _quality_report(self) -> QualityReport | None:
        """The scores as the bot shows them; a report this reader cannot parse is left out, not fatal."""
        try:
            return None if self.quality is None else QualityReport.model_validate(self.quality)
        except ValidationError as error:
            log.warning("subject %r: ignoring an unreadable quality report: %s", self.subject, error)
            return None


class DamagedWeights(Exception):
    """A version's weights file is missing, truncated or does not match the checksum published with it."""


def weights_problem(metadata: VersionMetadata, data: bytes) -> str | None:
    """Why `data` is not the weights file `metadata` was published with, or None when it is (or unknown)."""
    if metadata.weights_bytes is not None and len(data) != metadata.weights_bytes:
        return f"truncated ({len(data)} of {metadata.weights_bytes} bytes)"
    if metadata.weights_sha256 is not None and hashlib.sha256(data).hexdigest() != metadata.weights_sha256:
        return "checksum mismatch"
    return None


class ModelRegistry:
    """Versions of each subject's LoRA weights; all state lives on disk under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    # Reading

    def subjects(self) -> list[str]:
        """Subjects with at least one complete version, by name."""
        base = self.root / "subjects"
        names = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        return [name for name in names if re.fullmatch(SUBJECT_PATTERN, name) and self.versions(name)]

    def versions(self, subject: str | None = None) -> list[ModelVersion]:
        """Complete versions, oldest first; for all subjects, grouped by subject name."""
        if subject is None:
            return [v for name in self.subjects() for v in self.versions(name)]
        live = self._active_number(subject)
        return [meta.to_version(n, active=n == live) for n, meta in self._complete(subject)]

    def active(self, subject: str) -> ModelVersion | None:
        """The live version, or None when the subject has none (the caller falls back to the base model)."""
        number = self._active_number(subject)
        if number is None:
            return None
        meta = self._load(subject, number)
        if meta is None:
            log.warning("subject %r: active pointer names version %d, which is missing", subject, number)
            return None
        return meta.to_version(number, active=True)

    def version_dir(self, subject: str, version: int) -> Path:
        self._require(subject, version)
        return self._versions_dir(subject) / str(version)

    def read_weights(self, subject: str, version: int) -> bytes:
        """The version's weights file, read whole into memory and checked (DamagedWeights if it is bad)."""
        meta = self._require(subject, version)
        try:
            data = (self._versions_dir(subject) / str(version) / WEIGHTS_NAME).read_bytes()
        except FileNotFoundError:
            raise DamagedWeights("weights file missing") from None
        problem = weights_problem(meta, data)
        if problem is not None:
            raise DamagedWeights(problem)
        return data

    def damaged_versions(self) -> list[str]:
        """Every version whose weights fail their check, e.g. "rex v3: checksum mismatch" (reads each file)."""
        damaged = []
        for version in self.versions():
            try:
                self.read_weights(version.subject, version.version)
            except DamagedWeights as error:
                damaged.append(f"{version.subject} v{version.version}: {error}")
        return damaged

    def find_job(self, subject: str, job_id: str) -> ModelVersion | None:
        """The version a job already produced, so that one job id never produces two versions."""
        _check_job_id(job_id)
        live = self._active_number(subject)
        for number, meta in self._complete(subject):
            if meta.job_id == job_id:
                return meta.to_version(number, active=number == live)
        return None

    def resume_job(self, subject: str, job_id: str) -> ModelVersion | None:
        """Like `find_job`, but first finishes an activation the job asked for and did not complete."""
        with self._lock:
            version = self.find_job(subject, job_id)
            return None if version is None else self._finish_activation(version)

    # Writing

    def staging_dir(self, subject: str, job_id: str) -> Path:
        """A job's workspace; the same path on a re-run, so training resumes from its checkpoints."""
        path = self._staging_path(subject, job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def discard_staging(self, subject: str, job_id: str) -> None:
        path = self._staging_path(subject, job_id)
        if path.exists():
            shutil.rmtree(path)

    def publish(
        self, subject: str, job_id: str, metadata: VersionMetadata, *, activate: bool = True
    ) -> ModelVersion:
        """Turn a job's staged output into the next version.

        Publishing a job that already has a version returns that version and changes nothing, not even
        the active pointer (a replayed job must not undo a rollback made since), unless its own activation
        was cut short (see `resume_job`). Its staging is removed.
        """
        staging = self._staging_path(subject, job_id)
        if (metadata.subject, metadata.job_id) != (subject, job_id):
            raise InvalidRequest(
                f"metadata is for {metadata.subject!r}/{metadata.job_id!r}, not {subject!r}/{job_id!r}"
            )
        with self._lock:
            version = self.find_job(subject, job_id)
            if version is None:
                version = self._publish_new(staging, metadata, activate)
            else:
                version = self._finish_activation(version)
        self.discard_staging(subject, job_id)
        return version

    def activate(self, subject: str, version: int) -> ModelVersion:
        """Make `version` live: a rollback or a roll forward."""
        with self._lock:
            meta = self._require(subject, version)
            self._point_at(subject, version)
            for number in self._numbers(subject):  # an explicit choice replaces any unfinished activation
                (self._versions_dir(subject) / str(number) / ACTIVATION_PENDING).unlink(missing_ok=True)
        return meta.to_version(version, active=True)

    def delete(self, subject: str, version: int) -> None:
        """Remove a version that is not live; its number is never given out again."""
        with self._lock:
            self._require(subject, version)
            if self._active_number(subject) == version:
                raise InvalidRequest(f"version {version} of {subject!r} is active; activate another first")
            self._write_counter(subject, version)
            path = self._versions_dir(subject) / str(version)
            hidden = path.with_name(f".delete-{version}")
            os.rename(path, hidden)  # readers stop seeing it at once, however long the removal takes
            shutil.rmtree(hidden)

    # Helpers

    def _subject_dir(self, subject: str) -> Path:
        if not isinstance(subject, str) or not re.fullmatch(SUBJECT_PATTERN, subject):
            raise InvalidRequest(f"subject {subject!r} is not valid: 1-32 of a-z 0-9 _ -, first a-z or 0-9")
        return self.root / "subjects" / subject

    def _versions_dir(self, subject: str) -> Path:
        return self._subject_dir(subject) / "versions"

    def _staging_path(self, subject: str, job_id: str) -> Path:
        _check_job_id(job_id)
        return self._subject_dir(subject) / "staging" / job_id

    def _numbers(self, subject: str) -> list[int]:
        base = self._versions_dir(subject)
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if _VERSION_NAME.fullmatch(p.name) and p.is_dir())

    def _complete(self, subject: str) -> list[tuple[int, VersionMetadata]]:
        """Every version with readable metadata, oldest first."""
        loaded = ((n, self._load(subject, n)) for n in self._numbers(subject))
        return [(n, meta) for n, meta in loaded if meta is not None]

    def _load(self, subject: str, number: int) -> VersionMetadata | None:
        """A version's metadata, or None when it is missing or unreadable (listing skips such versions)."""
        path = self._versions_dir(subject) / str(number) / METADATA_NAME
        try:
            return VersionMetadata.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as error:
            log.warning("subject %r: skipping version %d, unreadable metadata: %s", subject, number, error)
            return None

    def _require(self, subject: str, version: int) -> VersionMetadata:
        meta = self._load(subject, version) if version >= 1 else None
        if meta is None:
            raise SubjectNotFound(f"subject {subject!r} has no version {version}")
        return meta

    def _active_number(self, subject: str) -> int | None:
        return _read_int(self._subject_dir(subject) / "active")

    def _point_at(self, subject: str, number: int) -> None:
        _write_atomic(self._subject_dir(subject) / "active", f"{number}\n")

    def _write_counter(self, subject: str, number: int) -> None:
        path = self._subject_dir(subject) / "last_version"
        _write_atomic(path, f"{max(number, _read_int(path) or 0)}\n")

    def _build(self, staging: Path, metadata: VersionMetadata) -> Path:
        """Copy the job's output files and metadata into a hidden directory beside the versions.

        Copied, not moved: a crash before the version appears must leave staging able to publish again.
        Subfolders (checkpoints) stay behind.
        """
        if not (staging / WEIGHTS_NAME).is_file():
            raise InvalidRequest(f"job {metadata.job_id} has no {WEIGHTS_NAME} in {staging}")
        tmp = self._versions_dir(metadata.subject) / f".publish-{metadata.job_id}"
        if tmp.exists():
            shutil.rmtree(tmp)  # left by an earlier attempt of this same job that crashed
        tmp.mkdir(parents=True)
        for item in staging.iterdir():
            if item.is_file() and item.name != METADATA_NAME:
                shutil.copy2(item, tmp / item.name)
        weights = (tmp / WEIGHTS_NAME).read_bytes()
        metadata = metadata.model_copy(
            update={"weights_sha256": hashlib.sha256(weights).hexdigest(), "weights_bytes": len(weights)}
        )
        _write_atomic(tmp / METADATA_NAME, metadata.model_dump_json(indent=2))
        return tmp

    def _publish_new(self, staging: Path, metadata: VersionMetadata, activate: bool) -> ModelVersion:
        subject = metadata.subject
        tmp = self._build(staging, metadata)
        if activate:
            (tmp / ACTIVATION_PENDING).touch()
        number = self._place(subject, tmp)
        self._write_counter(subject, number)
        if activate:
            self._point_at(subject, number)
            (self._versions_dir(subject) / str(number) / ACTIVATION_PENDING).unlink()
        log.info("subject %r: job %s published as version %d", subject, metadata.job_id, number)
        return metadata.to_version(number, active=activate)

    def _finish_activation(self, version: ModelVersion) -> ModelVersion:
        marker = self._versions_dir(version.subject) / str(version.version) / ACTIVATION_PENDING
        if not marker.exists():
            return version
        self._write_counter(version.subject, version.version)
        self._point_at(version.subject, version.version)
        marker.unlink()
        log.info("subject %r: finished activating version %d", version.subject, version.version)
        return version.model_copy(update={"active": True})

    def _place(self, subject: str, tmp: Path) -> int:
        """Give the built directory the next number; it becomes visible in this one rename."""
        last = _read_int(self._subject_dir(subject) / "last_version") or 0
        number = max([last, *self._numbers(subject)]) + 1
        os.rename(tmp, self._versions_dir(subject) / str(number))
        return number


def _check_job_id(job_id: str) -> None:
    if not isinstance(job_id, str) or not re.fullmatch(JOB_ID_PATTERN, job_id):
        raise InvalidRequest(f"job id {job_id!r} is not valid: 1-64 of A-Z, a-z, 0-9, '_', '-'")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None


def _write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader sees the old content or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
