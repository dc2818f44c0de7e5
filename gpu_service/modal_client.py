"""The GPU client for the Modal deployment (`modal_app.py`): every call is a remote call with its own timeout.

Pydantic models cross the boundary as plain dicts (`model_dump()` out, `model_validate()` in): a dict always
unpickles, and validation names any field that two versions of the code disagree on.

Errors are mapped to the small types in `gpu_service.errors`; the GPU side already turns its own failures into
those types, so the mapping here is for Modal's errors and for anything that still slips through.

Importing this module imports modal but no torch: it runs in the bot process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import modal.exception
from pydantic import ValidationError

from gpu_service.client import ProgressCallback, TrainProgressCallback
from gpu_service.errors import GpuServiceError, GpuTimeout, RemoteError
from gpu_service.modal_deployment import (
    FOLLOW_CALL,
    HOURS,
    TRAIN_TIMEOUT_S,
    DeployedApp,
    ModalLookup,
    ModalNames,
    map_error,
    training_call_key,
)
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
from gpu_service.settings import Settings

log = logging.getLogger(__name__)

# The client keeps polling a while past Modal's own limit, because a preempted training restarts.
TRAIN_FOLLOW_S = TRAIN_TIMEOUT_S + 1 * HOURS
STATUS_TIMEOUT_S = 10.0
# Registry calls run in a small container that may have to start first.
REGISTRY_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 5.0
CANCEL_SETTLE_S = 60.0  # after a cancel, how long to wait for the call to end and say whether it published
# What a member is told a cold start takes until one has been measured: a snapshot restore and the base
# model loading from the cache Volume onto the GPU.
DEFAULT_COLD_START_S = 60.0
_NOT_READY = object()


class CallGone(RemoteError):
    """A training's call id that Modal no longer knows: expired, or never existed."""


class ModalGpuClient:
    """GpuClient over Modal. `lookup` replaces the real handles (tests)."""

    def __init__(
        self, settings: Settings, *, lookup: ModalLookup | None = None,
        status_timeout_s: float = STATUS_TIMEOUT_S, registry_timeout_s: float = REGISTRY_TIMEOUT_S,
        poll_interval_s: float = POLL_INTERVAL_S, train_follow_s: float = TRAIN_FOLLOW_S,
        cancel_settle_s: float = CANCEL_SETTLE_S,
    ) -> None:
        self.settings = settings
        self.names = ModalNames(settings.PROJECT_NAME)
        self.lookup = lookup or DeployedApp(self.names)
        self.call_timeout_s = settings.MODAL_CALL_TIMEOUT_S
        self.cold_call_timeout_s = max(settings.MODAL_COLD_START_TIMEOUT_S, settings.MODAL_CALL_TIMEOUT_S)
        self.warm_for_s = settings.MODAL_SCALEDOWN_WINDOW_S  # a container stays up this long after its last call
        self.last_cold_start_s: float | None = None
        self._last_answer_at: float | None = None  # monotonic time the last generation came back
        self.status_timeout_s = status_timeout_s
        self.registry_timeout_s = registry_timeout_s
        self.poll_interval_s = poll_interval_s
        self.train_follow_s = train_follow_s
        self.cancel_settle_s = cancel_settle_s

    # Generation

    async def generate(
        self, request: GenerateRequest, on_progress: ProgressCallback | None = None
    ) -> GenerateResult:
        """A cold service (no container up) gets MODAL_COLD_START_TIMEOUT_S, and the listener hears that it
        is warming up; a service whose warmth cannot be read gets the cold budget too, silently."""
        payload = request.model_dump()
        warm = await self._warm()
        budget = self.call_timeout_s if warm else self.cold_call_timeout_s
        if warm is False and on_progress is not None:
            on_progress(GenerationProgress(step=0, total_steps=request.steps, warming_s=self.cold_start_estimate_s))
        started = time.monotonic()
        first_answer: list[float] = []
        if on_progress is None:
            data = await self._call(
                "generation", budget, lambda: self.lookup.inference().generate.remote.aio(payload)
            )
            result = _validated(GenerateResult, data)
        else:
            def answered() -> None:
                if not first_answer:
                    first_answer.append(time.monotonic())

            result = await self._call("generation", budget, lambda: self._stream(payload, on_progress, answered))
        self._answered(started, first_answer[0] if first_answer else time.monotonic(), cold=warm is False)
        return result

    @property
    def cold_start_estimate_s(self) -> float:
        """About how long a cold start takes: the last one measured, else DEFAULT_COLD_START_S."""
        return self.last_cold_start_s if self.last_cold_start_s is not None else DEFAULT_COLD_START_S

    async def _warm(self) -> bool | None:
        """Whether a container is up: yes when a generation came back within the scale-down window, else
        what the autoscaler counts (asking starts no container); None when that cannot be read."""
        if self._last_answer_at is not None and time.monotonic() - self._last_answer_at < self.warm_for_s:
            return True
        try:
            stats = await self._stats()
        except GpuServiceError as error:
            log.info("could not tell whether the GPU service is warm: %s", error)
            return None
        return stats.num_total_runners > 0

    def _answered(self, started: float, first_answer: float, *, cold: bool) -> None:
        """Remember that the service is warm now and, after a cold start, how long the start took (up to
        the first answer: the first progress step, or the whole call without a stream)."""
        self._last_answer_at = time.monotonic()
        if cold:
            self.last_cold_start_s = round(first_answer - started, 1)
            log.info("cold start of the GPU service: %.1f s", self.last_cold_start_s)

    async def _stream(
        self, payload: dict, on_progress: ProgressCallback, answered: Callable[[], None]
    ) -> GenerateResult:
        result = None
        stream = self.lookup.inference().generate_stream.remote_gen.aio(payload)
        try:
            async for item in stream:
                answered()
                if item.get("kind") == "progress":
                    on_progress(_validated(GenerationProgress, item["data"]))
                else:
                    result = _validated(GenerateResult, item["data"])
        finally:
            await _close(stream)
        if result is None:
            raise RemoteError("The GPU service ended the stream without a result.")
        return result

    # Training

    async def train(
        self, request: TrainRequest, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        """Spawn the training on Modal and follow it to its result.

        The first report, right after the spawn, is "queued" with the call's id; every later one repeats it,
        so the caller can store it and `resume_training` after a restart.
        """
        payload = request.model_dump()
        call = await self._call(
            "training start", self.registry_timeout_s,
            lambda: self.lookup.function(self.names.train).spawn.aio(payload),
        )
        call_id = call.object_id
        if on_progress is not None:
            on_progress(TrainProgress(job_id=request.job_id, state="queued", call_id=call_id))
        return await self._follow(call, call_id, request.job_id, on_progress)

    async def resume_training(
        self, request: TrainRequest, call_id: str | None, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        """Re-attach to `call_id`, else to the call the job recorded for itself on Modal (a bot killed right
        after the spawn never saved its id); with neither, or one Modal no longer knows, run the job again.

        Running again is safe: the job resumes from its checkpoints, or returns the version it already made;
        a second call of a job whose first call still runs hands over to it (FOLLOW_CALL).
        A call that ended in failure reports that failure: it is the job's outcome.
        """
        if call_id is None:
            call_id = await self._recorded_call(request.job_id)
            if call_id is not None and on_progress is not None:  # the caller saves it now
                on_progress(TrainProgress(job_id=request.job_id, state="queued", call_id=call_id))
        if call_id is None:
            return await self.train(request, on_progress)
        try:
            return await self._follow(self.lookup.function_call(call_id), call_id, request.job_id, on_progress)
        except CallGone as gone:
            log.info("training %s: call %s is gone (%s); running the job again", request.job_id, call_id, gone)
            return await self.train(request, on_progress)

    async def _follow(
        self, call: Any, call_id: str, job_id: str, on_progress: TrainProgressCallback | None
    ) -> TrainResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.train_follow_s
        last: TrainProgress | None = None
        while True:
            result = await self._poll(call)
            # Read after the poll, so the job's last report ("done") arrives before its result.
            progress = await self._read_progress(job_id) if on_progress is not None else None
            if progress is not None and progress != last:
                last = progress
                on_progress(progress.model_copy(update={"call_id": call_id}))
            if isinstance(result, dict) and FOLLOW_CALL in result:
                call_id = result[FOLLOW_CALL]  # another call runs this job: it is the one to follow
                call = self.lookup.function_call(call_id)
                if on_progress is not None:
                    on_progress(TrainProgress(job_id=job_id, state="queued", call_id=call_id))
                continue
            if result is not _NOT_READY:
                return _validated(TrainResult, result)
            if loop.time() > deadline:
                raise GpuTimeout(
                    f"Training {job_id} has not finished after {self.train_follow_s / HOURS:g} h of waiting."
                )
            await asyncio.sleep(self.poll_interval_s)

    async def cancel_training(self, job_id: str, call_id: str | None) -> TrainResult | None:
        """Cancel the job's call (the one given, else the one it recorded), then wait for it to end: a result
        means it published before the cancel arrived. GpuTimeout if it has not ended within the settle time."""
        call_id = call_id or await self._recorded_call(job_id)
        if call_id is None:
            return None
        call = self.lookup.function_call(call_id)
        await self._call("training cancel", self.status_timeout_s, lambda: call.cancel.aio())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cancel_settle_s
        while True:
            try:
                result = await self._poll(call)
            except GpuServiceError:  # cancelled, failed or gone: this call published nothing
                return None
            if isinstance(result, dict) and FOLLOW_CALL in result:
                return await self.cancel_training(job_id, result[FOLLOW_CALL])
            if result is not _NOT_READY:
                return _validated(TrainResult, result)
            if loop.time() > deadline:
                raise GpuTimeout(f"Training {job_id} was asked to stop but has not ended yet.")
            await asyncio.sleep(self.poll_interval_s)

    async def _recorded_call(self, job_id: str) -> str | None:
        """The call id the job's train call recorded on Modal; None when there is none or it cannot be read."""
        try:
            async with asyncio.timeout(self.status_timeout_s):
                found = await self.lookup.progress_store().get.aio(training_call_key(job_id))
        except (TimeoutError, modal.exception.Error) as error:
            log.warning("could not read the call of training %s: %s", job_id, error.__class__.__name__)
            return None
        return found if isinstance(found, str) else None

    async def _poll(self, call: Any) -> Any:
        """The call's result, or _NOT_READY. A poll that hangs counts as not ready: the next one retries."""
        try:
            async with asyncio.timeout(self.status_timeout_s):
                return await call.get.aio(timeout=0)
        except TimeoutError:
            # Modal raises the built-in TimeoutError for "no result yet". The GPU side turns its own
            # failures into GpuServiceErrors, so a TimeoutError here is never the job's own error.
            return _NOT_READY
        except GpuServiceError:
            raise
        except (modal.exception.OutputExpiredError, modal.exception.NotFoundError) as error:
            raise CallGone(
                "Modal no longer has this training's call (results are kept 7 days); run it again."
            ) from error
        except modal.exception.ConnectionError as error:
            # A network blip must not abandon an hours-long training: the next poll tries again.
            log.warning("polling a training call failed (%s); retrying", error.__class__.__name__)
            return _NOT_READY
        except Exception as error:
            raise self._mapped(error) from error

    async def _read_progress(self, job_id: str) -> TrainProgress | None:
        """The job's latest published progress; None when there is none yet or the read failed."""
        try:
            async with asyncio.timeout(self.status_timeout_s):
                data = await self.lookup.progress_store().get.aio(job_id)
            return None if data is None else TrainProgress.model_validate(data)
        except (TimeoutError, ValidationError, modal.exception.Error) as error:
            log.warning("could not read progress of training %s: %s", job_id, error.__class__.__name__)
            return None

    # Registry and status

    async def list_versions(self, subject: str | None = None) -> list[ModelVersion]:
        data = await self._call(
            "version list", self.registry_timeout_s,
            lambda: self.lookup.function(self.names.list_versions).remote.aio(subject),
        )
        return [_validated(ModelVersion, item) for item in data]

    async def activate(self, subject: str, version: int) -> ModelVersion:
        data = await self._call(
            "activation", self.registry_timeout_s,
            lambda: self.lookup.function(self.names.activate).remote.aio(subject, version),
        )
        return _validated(ModelVersion, data)

    async def export_lora(self, subject: str, version: int, fmt: str = "diffusers") -> bytes:
        return await self._call(
            "export", self.registry_timeout_s,
            lambda: self.lookup.function(self.names.export_lora).remote.aio(subject, version, fmt),
        )

    async def status(self) -> ServiceStatus:
        """Never raises. Reads the autoscaler's counters, which starts no container (a remote call would)."""
        try:
            stats = await self._stats()
        except GpuServiceError as error:
            return ServiceStatus(
                backend="modal", reachable=False, warm=False, detail=str(error),
                last_cold_start_s=self.last_cold_start_s,
            )
        running = stats.num_total_runners
        return ServiceStatus(
            backend="modal", reachable=True, warm=running > 0,
            detail=f"app {self.names.app}: {running} container(s) up, {stats.backlog} request(s) queued",
            last_cold_start_s=self.last_cold_start_s,
        )

    async def _stats(self) -> Any:
        return await self._call(
            "status check", self.status_timeout_s, lambda: self.lookup.inference().generate.get_current_stats.aio()
        )

    async def close(self) -> None:
        """Nothing to release: Modal's client is process-wide and closes itself at exit."""

    # Calls and errors

    async def _call(self, what: str, timeout_s: float, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run one remote call under its own deadline; every failure leaves as a GpuServiceError."""
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                return await work()
        except GpuServiceError:
            raise
        except Exception as error:
            if deadline.expired():
                raise GpuTimeout(
                    f"The GPU service did not finish the {what} within {timeout_s:g} s; try again shortly."
                ) from error
            raise self._mapped(error) from error

    def _mapped(self, error: BaseException) -> GpuServiceError:
        return map_error(error, self.names.app)


async def _close(stream: Any) -> None:
    """Stop the remote generator when we stop reading (timeout, error); bounded, and never masks the reason."""
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    try:
        async with asyncio.timeout(2.0):
            await aclose()
    except Exception as error:
        log.debug("closing a generation stream failed: %r", error)


def _validated(model: type, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        log.warning("unexpected %s from the GPU service: %s", model.__name__, error)
        raise RemoteError(
            f"The GPU service sent a {model.__name__} this bot cannot read: is the deployment up to date "
            "(`make deploy`)?"
        ) from error
