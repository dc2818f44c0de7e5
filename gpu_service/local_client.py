"""The in-process GPU client: the engine runs in a worker thread, the event loop never blocks.

Importing this module imports no torch: the engine is imported inside the worker when first used, so
a bot configured for Modal never pays for it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

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
    """One warm pipeline, loaded once, used by one worker thread at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.registry_dir)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-generate")
        self._generator = None

    async def start(self) -> None:
        """Load the pipeline now rather than on the first request."""
        await self._in_worker(self._ensure_generator)

    async def generate(
        self, request: GenerateRequest, on_progress: ProgressCallback | None = None
    ) -> GenerateResult:
        loop = asyncio.get_running_loop()
        report = None
        if on_progress is not None:
            def report(progress):  # called on the worker thread; hand it to the loop's thread
                loop.call_soon_threadsafe(on_progress, progress)

        return await self._in_worker(lambda: self._ensure_generator().generate(request, report))

    async def train(
        self, request: TrainRequest, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        raise NotImplementedError  # arrives with the training engine

    async def list_versions(self, subject: str | None = None) -> list[ModelVersion]:
        return await asyncio.to_thread(self.registry.versions, subject)

    async def activate(self, subject: str, version: int) -> ModelVersion:
        return await asyncio.to_thread(self.registry.activate, subject, version)

    async def status(self) -> ServiceStatus:
        warm = self._generator is not None
        return ServiceStatus(
            backend="local", reachable=True, warm=warm,
            detail=f"{self.settings.BASE_MODEL} {'loaded' if warm else 'loads on first use'}",
        )

    async def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    async def _in_worker(self, work):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._worker, work)
        except GpuServiceError:
            raise
        except Exception as error:
            log.exception("generation failed")
            raise RemoteError(f"The image engine failed ({error.__class__.__name__}).") from error

    def _ensure_generator(self):
        if self._generator is None:
            from gpu_service.engine.adapters import AdapterSwitcher
            from gpu_service.engine.generator import Generator

            token = self.settings.HUGGINGFACE_TOKEN
            self._generator = Generator.load(
                self.settings.BASE_MODEL,
                adapters_factory=lambda pipe: AdapterSwitcher(pipe, self.registry),
                token=token.get_secret_value() if token else None,
                default_subject=self.settings.DEFAULT_SUBJECT,
                default_phrase=self.settings.INSTANCE_PHRASE,
            )
        return self._generator
