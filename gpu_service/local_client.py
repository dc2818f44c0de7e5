"""The in-process GPU client: the engine runs on its own threads, the event loop never blocks.

Importing this module imports no torch: the engine is imported when the client is built, only in a
process configured with GPU_BACKEND=local.
"""

from __future__ import annotations

import asyncio
import logging

from gpu_service.client import ProgressCallback, TrainProgressCallback
from gpu_service.errors import GpuServiceError, RemoteError
from gpu_service.registry import ModelRegistry
from gpu_service.schemas import (
    GenerateRequest,
    GenerateResult,
    ModelVersion,
    ServiceStatus,
    TrainRequest,
    TrainResult,
)
from gpu_service.settings import Settings

log = logging.getLogger(__name__)


class LocalGpuClient:
    """One warm pipeline, loaded once; concurrent requests are batched by the inference service."""

    def __init__(self, settings: Settings) -> None:
        from gpu_service.engine.service import InferenceService

        self.settings = settings
        self.registry = ModelRegistry(settings.registry_dir)
        self.service = InferenceService.from_settings(settings)
        self.service.registry = self.registry

    async def start(self) -> None:
        """Load the pipeline now rather than on the first request."""
        await self._guard(asyncio.to_thread(self.service.load))

    async def generate(
        self, request: GenerateRequest, on_progress: ProgressCallback | None = None
    ) -> GenerateResult:
        loop = asyncio.get_running_loop()
        report = None
        if on_progress is not None:
            def report(progress):  # called on the engine's thread; hand it to the loop's thread
                loop.call_soon_threadsafe(on_progress, progress)

        return await self._guard(asyncio.wrap_future(self.service.submit(request, report)))

    async def train(
        self, request: TrainRequest, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        raise NotImplementedError  # arrives with the training engine

    async def list_versions(self, subject: str | None = None) -> list[ModelVersion]:
        return await asyncio.to_thread(self.registry.versions, subject)

    async def activate(self, subject: str, version: int) -> ModelVersion:
        return await asyncio.to_thread(self.registry.activate, subject, version)

    async def status(self) -> ServiceStatus:
        warm = self.service.loaded
        state = "loaded" if warm else "loads on first use"
        return ServiceStatus(
            backend="local", reachable=True, warm=warm,
            detail=f"{self.settings.BASE_MODEL} {state}; {self.service.queued()} queued",
        )

    async def close(self) -> None:
        await asyncio.to_thread(self.service.close)

    async def _guard(self, work):
        try:
            return await work
        except GpuServiceError:
            raise
        except Exception as error:
            log.exception("the local image engine failed")
            raise RemoteError(f"The image engine failed ({error.__class__.__name__}).") from error
