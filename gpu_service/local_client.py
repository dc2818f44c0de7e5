"""The in-process GPU client: the engine runs on its own threads, the event loop never blocks.

Importing this module imports no torch: the engine is imported when the client is built, only in a
process configured with GPU_BACKEND=local.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from gpu_service.client import ProgressCallback, TrainProgressCallback
from gpu_service.errors import GpuBusy, GpuServiceError, RemoteError
from gpu_service.leases import TrainingLease, TrainingLeases
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


GPU_BUSY_TRAINING = "The GPU is busy with another training; try again when it has finished."


class LocalGpuClient:
    """One warm pipeline, loaded once; concurrent requests are batched by the inference service.

    One training at a time on the whole engine, whatever its subject: two next to the warm pipeline do not
    fit in one GPU's memory. A second one is refused with GpuBusy rather than queued, so the admin hears at
    once instead of waiting hours behind the first.
    """

    def __init__(self, settings: Settings) -> None:
        from gpu_service.engine.service import InferenceService

        self.settings = settings
        self.service = InferenceService.from_settings(settings)
        self.registry = self.service.registry
        self.training_leases = TrainingLeases()  # touched on the loop only
        self._trainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-train")
        self._training_runs = False  # touched on the loop only
        self._trainings: dict[str, tuple[threading.Event, Future]] = {}  # job id -> its stop flag and thread

    async def start(self) -> None:
        """Load the pipeline now rather than on the first request."""
        await self._guard(asyncio.to_thread(self.service.load))

    async def generate(
        self, request: GenerateRequest, on_progress: ProgressCallback | None = None
    ) -> GenerateResult:
        """A caller that stops waiting (a cancelled task) stops the rendering too, at its next step."""
        report = _on_loop(on_progress)
        cancel = threading.Event()
        submitted = self.service.submit(request, report, previews=on_progress is not None, cancel=cancel)
        try:
            return await self._guard(asyncio.wrap_future(submitted))
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def train(
        self, request: TrainRequest, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        """Train on a thread of its own: members keep generating (on the old version) meanwhile."""
        from gpu_service.engine.training_job import run_training_job

        lease = self.training_leases.take(request.subject)
        if self._training_runs:
            lease.release()
            raise GpuBusy(GPU_BUSY_TRAINING)
        self._training_runs = True
        try:
            # The pipeline first, so the first generations need not wait behind the training's own loads
            # (every load of the engine takes one process-wide lock: see pipeline_loading.MODEL_LOADING).
            await self.start()
        except BaseException:
            self._training_ended(lease)
            raise
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        running = self._trainer.submit(
            run_training_job, self.settings, request, _on_loop(on_progress), self.registry, stop
        )
        self._trainings[request.job_id] = (stop, running)
        # A thread cannot be cancelled: the subject and the GPU stay taken until the training really ends,
        # even if the caller stops waiting (`cancel_training` asks it to stop at its next step).
        running.add_done_callback(
            lambda _: loop.call_soon_threadsafe(self._training_ended, lease, request.job_id)
        )
        return await self._guard(asyncio.wrap_future(running))

    def _training_ended(self, lease: TrainingLease, job_id: str | None = None) -> None:
        self._training_runs = False
        self._trainings.pop(job_id, None)
        lease.release()

    async def cancel_training(self, job_id: str, call_id: str | None) -> TrainResult | None:
        """Stop the job at its next step or stage and wait for its thread to end; the job's version if it
        published one before it could be stopped, else None."""
        stop, running = self._trainings.get(job_id, (None, None))
        if stop is not None:
            stop.set()
            with contextlib.suppress(Exception):  # its own error (TrainingCancelled) is the expected end
                await asyncio.wrap_future(running)
        return await asyncio.to_thread(self._published, job_id)

    def _published(self, job_id: str) -> TrainResult | None:
        from gpu_service.engine.training import previous_result

        for subject in self.registry.subjects():
            version = self.registry.find_job(subject, job_id)
            if version is not None:
                return previous_result(self.registry, version, job_id)
        return None

    async def resume_training(
        self, request: TrainRequest, call_id: str | None, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        """In-process there is no call to re-attach to: run the job again; it resumes from its checkpoint."""
        return await self.train(request, on_progress)

    async def list_versions(self, subject: str | None = None) -> list[ModelVersion]:
        return await asyncio.to_thread(self.registry.versions, subject)

    async def activate(self, subject: str, version: int) -> ModelVersion:
        return await asyncio.to_thread(self._activate, subject, version)

    def _activate(self, subject: str, version: int) -> ModelVersion:
        """Make the version live, then give its W&B artifact the `live` alias (online; never raises)."""
        from gpu_service.engine.train_wandb import WandbTrainingConfig, move_live_alias

        chosen = self.registry.activate(subject, version)
        move_live_alias(WandbTrainingConfig.from_settings(self.settings), self.registry, subject, version)
        return chosen

    async def export_lora(self, subject: str, version: int, fmt: str = "diffusers") -> bytes:
        from gpu_service.engine.export import export_lora

        return await self._guard(asyncio.to_thread(export_lora, self.registry, subject, version, fmt))

    async def status(self) -> ServiceStatus:
        warm = self.service.loaded
        state = "loaded" if warm else "loads on first use"
        return ServiceStatus(
            backend="local", reachable=True, warm=warm,
            detail=f"{self.settings.BASE_MODEL} {state}; {self.service.queued()} queued",
            bad_versions=tuple(self.service.bad_versions()),
        )

    async def close(self) -> None:
        self._trainer.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.service.close)

    async def _guard(self, work):
        try:
            return await work
        except GpuServiceError:
            raise
        except Exception as error:
            log.exception("the local image engine failed")
            raise RemoteError(f"The image engine failed ({error.__class__.__name__}).") from error


def _on_loop(callback):
    """Wrap a callback so engine threads hand their calls to the event loop's thread."""
    if callback is None:
        return None
    loop = asyncio.get_running_loop()

    def report(progress):
        loop.call_soon_threadsafe(callback, progress)

    return report
