"""The one async interface the bot side calls. Backends: in-process (local_client) and Modal (modal_client)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gpu_service.schemas import (
    GenerateRequest,
    GenerateResult,
    GenerationProgress,
    ModelVersion,
    ServiceStatus,
    TrainProgress,
    TrainRequest,
    TrainResult,
)

ProgressCallback = Callable[[GenerationProgress], None]
TrainProgressCallback = Callable[[TrainProgress], None]


class GpuClient(Protocol):
    async def generate(
        self, request: GenerateRequest, on_progress: ProgressCallback | None = None
    ) -> GenerateResult:
        """Render a request; `on_progress` is called on the event loop's thread."""

    async def train(
        self, request: TrainRequest, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        """Train a new version (idempotent by job id) and make it live.

        Progress carries `call_id` once the backend has one: store it to re-attach after a restart.
        """

    async def resume_training(
        self, request: TrainRequest, call_id: str | None, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        """After a restart: re-attach to the running call, or run the job again (it resumes from its
        last checkpoint, and a job that already produced a version returns it at once)."""

    async def cancel_training(self, job_id: str, call_id: str | None) -> TrainResult | None:
        """Stop a training the caller gave up on, for real, so it publishes nothing. Returns the job's result
        when it had already published its version (the caller announces it), else None."""

    async def list_versions(self, subject: str | None = None) -> list[ModelVersion]:
        """Every version of one subject (or of all), oldest first."""

    async def activate(self, subject: str, version: int) -> ModelVersion:
        """Make a version live (rollback)."""

    async def export_lora(self, subject: str, version: int, fmt: str = "diffusers") -> bytes:
        """A version's LoRA file: "diffusers" (as stored) or "kohya" (for AUTOMATIC1111 and ComfyUI)."""

    async def status(self) -> ServiceStatus: ...

    async def close(self) -> None: ...
