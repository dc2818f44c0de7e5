"""A GpuClient that builds the real one on first use, on a worker thread.

The local backend imports torch and diffusers when its client is built (seconds). Built here instead,
the bot connects to Discord at once and acknowledges interactions while the engine loads; with
GPU_BACKEND=modal the build is cheap and this changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gpu_service.client import GpuClient, ProgressCallback, TrainProgressCallback
from gpu_service.schemas import (
    GenerateRequest,
    GenerateResult,
    ModelVersion,
    ServiceStatus,
    TrainRequest,
    TrainResult,
)

BUILD_TIMEOUT_S = 600.0


class LazyGpuClient:
    """The build runs once, as a task of its own: a caller that gives up waiting (autocomplete's short
    time limit, a cancelled request) never abandons a half-done build for the next caller to repeat."""

    def __init__(self, factory: Callable[[], GpuClient], *, backend: str = "") -> None:
        self._factory = factory
        self._backend = backend
        self._client: GpuClient | None = None
        self._building: asyncio.Task[GpuClient] | None = None

    @property
    def built(self) -> bool:
        return self._client is not None

    async def client(self) -> GpuClient:
        if self._client is not None:
            return self._client
        if self._building is None or _failed(self._building):
            self._building = asyncio.create_task(self._build(), name="build-gpu-client")  # failed ones are retried
        return await asyncio.shield(self._building)

    async def _build(self) -> GpuClient:
        async with asyncio.timeout(BUILD_TIMEOUT_S):
            self._client = await asyncio.to_thread(self._factory)
        return self._client

    async def warm(self) -> None:
        """Build the client and, where it can, load its model now rather than on the first request."""
        client = await self.client()
        start = getattr(client, "start", None)
        if start is not None:
            await start()

    async def generate(self, request: GenerateRequest, on_progress: ProgressCallback | None = None) -> GenerateResult:
        return await (await self.client()).generate(request, on_progress)

    async def train(self, request: TrainRequest, on_progress: TrainProgressCallback | None = None) -> TrainResult:
        return await (await self.client()).train(request, on_progress)

    async def resume_training(
        self, request: TrainRequest, call_id: str | None, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        return await (await self.client()).resume_training(request, call_id, on_progress)

    async def cancel_training(self, job_id: str, call_id: str | None) -> TrainResult | None:
        return await (await self.client()).cancel_training(job_id, call_id)

    async def list_versions(self, subject: str | None = None) -> list[ModelVersion]:
        return await (await self.client()).list_versions(subject)

    async def activate(self, subject: str, version: int) -> ModelVersion:
        return await (await self.client()).activate(subject, version)

    async def export_lora(self, subject: str, version: int, fmt: str = "diffusers") -> bytes:
        return await (await self.client()).export_lora(subject, version, fmt)

    async def status(self) -> ServiceStatus:
        if self._client is None:
            return ServiceStatus(backend=self._backend, reachable=True, warm=False, detail="not started yet")
        return await self._client.status()

    async def close(self) -> None:
        if self._building is not None and not self._building.done():
            await asyncio.wait({self._building}, timeout=BUILD_TIMEOUT_S)  # then close what it built
        if self._client is not None:
            await self._client.close()


def _failed(task: asyncio.Task) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
