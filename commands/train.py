"""The /train use case: check options, take the images in (before any GPU time), train, record the job.

    async with training.preparing(options, ctx) as prepared:  # the subject's lease, phrases, intake, job
        result = await training.run(prepared, on_progress)    # the GPU; releases the lease when it ends

`preparing` takes the subject's training lease (gpu_service.leases) first, so a busy subject is refused
before any image is fetched. The lease belongs to the block until it hands it to a training: if the block
fails before `run` starts, the lease is released and the prepared job is marked failed, so no front end
can leak a lease or leave a job for the next start to resume.

Training images are kept under DATA_DIR/jobs/<job_id>/ until the job ends, so a restart can run the job
again (`resume`) even when the backend has no call to re-attach to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from commands.context import RequestContext
from commands.generate import new_id
from commands.jobs import JobRecord, JobStore
from commands.permissions import Caller
from commands.subjects import SubjectCatalog
from commands.training_gate import TrainingGate
from commands.validation import build
from gpu_service.client import GpuClient, TrainProgressCallback
from gpu_service.errors import GpuBusy, GpuTimeout, IntakeError, InvalidRequest, TrainingFailed
from gpu_service.intake import IntakePolicy, Rejection, collect_images
from gpu_service.leases import TrainingLease, TrainingLeases
from gpu_service.schemas import ImageSource, TrainProgress, TrainRequest, TrainResult
from gpu_service.settings import SUBJECT_NAME_PATTERN
from gpu_service.subjects import subject_name

log = logging.getLogger(__name__)
_LINK = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CANCEL_TIMEOUT_S = 120.0  # stopping a training the bot gave up on: the engine stops at its next step or stage


@dataclass(frozen=True)
class TrainOptions:
    """What an admin typed. None means "the default" (the subject's current phrases, or the settings')."""

    subject: str | None = None
    instance_phrase: str | None = None
    class_phrase: str | None = None
    steps: int | None = None
    urls: str = ""  # links separated by white space, or one link to a text file that lists them
    attachments: tuple[ImageSource, ...] = ()  # bytes the front end already holds (Discord attachments)
    pre_rejected: tuple[Rejection, ...] = ()  # refused by the front end before downloading (too large)
    local_files: bool = False  # the shell only: words in `urls` that are not links name files or folders


@dataclass(frozen=True)
class TrainDefaults:
    subject: str
    instance_phrase: str
    class_phrase: str
    images_file_url: str = ""  # IMAGES_FILE_URL, for the default subject



@dataclass(frozen=True)
class RunningTraining:
    """A training this process is running, with its latest progress (None until the first report)."""

    job_id: str
    subject: str
    progress: TrainProgress | None = None


@dataclass(eq=False)
class PreparedTraining:
    request: TrainRequest
    context: RequestContext
    rejected: tuple[Rejection, ...]
    lease: TrainingLease
    started: bool = False  # `run` took it over: the lease is the training's now

    @property
    def job_id(self) -> str:
        return self.request.job_id


class TrainingService:
    def __init__(
        self, client: GpuClient, jobs: JobStore, catalog: SubjectCatalog, gate: TrainingGate, *,
        policy: IntakePolicy, defaults: TrainDefaults, jobs_dir: Path, timeout_s: float = 7200.0,
    ) -> None:
        self.gate = gate
        self.client = client
        self.jobs = jobs
        self.catalog = catalog
        self.policy = policy
        self.defaults = defaults
        self.jobs_dir = Path(jobs_dir)
        self.timeout_s = timeout_s
        self.leases = TrainingLeases()
        self._live: dict[str, RunningTraining] = {}  # job id -> latest progress, for /status

    @contextlib.asynccontextmanager
    async def preparing(
        self, options: TrainOptions, context: RequestContext, caller: Caller,
        before_intake: Callable[[TrainOptions], Awaitable[TrainOptions]] | None = None,
    ) -> AsyncIterator[PreparedTraining]:
        """Take the subject's lease, check the caller's rights and the budgets (training_gate.py) and every
        option, then fetch and check the images (after `before_intake`, the front end's own downloads). No
        GPU time is spent here. See the module docstring for who releases the lease."""
        key = await self.gate.admit(caller, self._name(options.subject), options.steps)
        try:
            lease = self.leases.take(key)
            try:
                if before_intake is not None:
                    options = await before_intake(options)
                prepared = await self._prepare(lease, options, context)
            except BaseException:
                lease.release()
                raise
        finally:
            self.gate.recorded()
        try:
            yield prepared
        except BaseException as error:
            if not prepared.started:
                await self.abandon(prepared, f"stopped before the training started ({error.__class__.__name__})")
            raise

    def _name(self, subject: str | None) -> str:
        """The subject's name as typed (default: DEFAULT_SUBJECT); InvalidRequest for a bad one."""
        name = (subject or self.defaults.subject).strip().lower()
        if not re.fullmatch(SUBJECT_NAME_PATTERN, name):
            raise InvalidRequest(
                f"`subject`: {name[:40]!r} is not a valid name (1-32 of a-z, 0-9, '_' or '-', starting "
                "with a letter or digit)."
            )
        return name

    async def _prepare(self, lease: TrainingLease, options: TrainOptions, context: RequestContext) -> PreparedTraining:
        request = await self._checked_request(lease.subject, options, context)
        sources = self._sources(lease.subject, options)
        try:
            intake = await collect_images(sources, self.policy)
        except IntakeError as error:
            raise IntakeError(_with_rejections(error.message, options.pre_rejected)) from None
        images = tuple(ImageSource(data=image.png, name=image.name) for image in intake.images)
        request = request.model_copy(update={"images": images})
        await asyncio.to_thread(self._save_images, request)
        await self.jobs.add(JobRecord.new(request.job_id, "train", context, _request_json(request)))
        return PreparedTraining(request, context, options.pre_rejected + intake.rejected, lease)

    async def run(self, prepared: PreparedTraining, on_progress: TrainProgressCallback | None = None) -> TrainResult:
        """Train on the GPU and publish; the job ends "done" or "failed" (a shutdown leaves it running)."""
        prepared.started = True
        with prepared.lease:
            return await self._tracked(prepared.request, None, on_progress, resuming=False)

    async def abandon(self, prepared: PreparedTraining, reason: str) -> None:
        """A prepared job that will never run (its front end could not report it): nothing resumes it."""
        prepared.started = True
        prepared.lease.release()
        await self.jobs.update(prepared.job_id, state="failed", error=reason[:500])
        await self._forget_images(prepared.job_id)

    async def resume(self, record: JobRecord, on_progress: TrainProgressCallback | None = None) -> TrainResult:
        """After a restart: re-attach to the backend's call, or run the job again from its checkpoint."""
        try:
            lease = self.leases.take(str(record.request.get("subject") or self.defaults.subject))  # the key
        except GpuBusy:
            # A new /train of the subject started first; resuming later would collide with it forever.
            await self.jobs.update(record.job_id, state="failed", error="a newer training of the subject started")
            await self._forget_images(record.job_id)
            raise
        with lease:
            try:
                request = await asyncio.to_thread(self._load_request, record)
            except (OSError, ValueError, KeyError) as error:
                await self.jobs.update(record.job_id, state="failed", error=f"cannot resume: {error}")
                raise TrainingFailed(f"The interrupted training {record.job_id} could not be resumed.") from error
            return await self._tracked(request, record.call_id, on_progress, resuming=True)

    def running(self) -> list[RunningTraining]:
        """Trainings running in this process, oldest first, each with its latest progress."""
        return list(self._live.values())

    async def _tracked(
        self, request: TrainRequest, call_id: str | None, on_progress: TrainProgressCallback | None,
        *, resuming: bool,
    ) -> TrainResult:
        job_id = request.job_id
        seen_call = [call_id]

        def progress(update: TrainProgress) -> None:
            self._live[job_id] = RunningTraining(job_id, request.subject, update)
            if update.call_id and update.call_id != seen_call[0]:
                seen_call[0] = update.call_id
                self.jobs.update_soon(job_id, call_id=update.call_id)  # the store's thread owns it
            if on_progress is not None:
                on_progress(update)

        self._live[job_id] = RunningTraining(job_id, request.subject)  # before the store says "running"
        try:
            await self.jobs.update(job_id, state="running")
        except BaseException:
            self._live.pop(job_id, None)
            raise
        try:
            result = await self._call(request, call_id, progress, resuming=resuming)
        except asyncio.CancelledError:
            raise  # a shutdown: the job stays "running" and the next start resumes it
        except Exception as error:
            await self.jobs.update(job_id, state="failed", error=f"{error.__class__.__name__}: {error}"[:500])
            await self._forget_images(job_id)
            raise
        finally:
            self._live.pop(job_id, None)
        version = result.version
        outcome = {"subject": version.subject, "version": version.version, "wandb_url": version.wandb_url}
        await self.jobs.update(job_id, state="done", result=outcome)
        self.catalog.invalidate()
        await self._forget_images(job_id)
        return result

    async def _forget_images(self, job_id: str) -> None:
        """A finished job needs its images no more: the version's metadata keeps their hashes."""
        await asyncio.to_thread(shutil.rmtree, self.jobs_dir / job_id, True)

    async def _call(
        self, request: TrainRequest, call_id: str | None, progress: TrainProgressCallback, *, resuming: bool
    ) -> TrainResult:
        try:
            async with asyncio.timeout(self.timeout_s):
                if not resuming:
                    return await self.client.train(request, progress)
                return await self.client.resume_training(request, call_id, progress)
        except TimeoutError:
            gave_up = GpuTimeout(f"The training did not finish within {self.timeout_s / 60:g} minutes.")
        except GpuTimeout as backend_limit:  # the backend stopped waiting first
            gave_up = backend_limit
        return await self._stopped(request, call_id, gave_up)

    async def _stopped(self, request: TrainRequest, call_id: str | None, gave_up: GpuTimeout) -> TrainResult:
        """The bot gives up on a training: cancel it for real. A version it published before the cancel
        arrived is its result, announced as usual; otherwise the job fails, saying that nothing went live."""
        running = self._live.get(request.job_id)
        if running is not None and running.progress is not None and running.progress.call_id:
            call_id = running.progress.call_id  # the call id reported since the job (re)started
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT_S):
                finished = await self.client.cancel_training(request.job_id, call_id)
        except Exception as error:
            log.warning("training %s: the cancel failed (%r)", request.job_id, error)
            raise GpuTimeout(f"{gave_up} It could not be stopped: a version may still appear.") from error
        if finished is None:
            raise GpuTimeout(f"{gave_up} It was stopped, and nothing was published.") from None
        log.warning("training %s finished after the bot gave up: v%d is live", request.job_id,
                    finished.version.version)
        return finished

    async def _checked_request(self, subject: str, options: TrainOptions, context: RequestContext) -> TrainRequest:
        """`subject` is the key; a server's own copy of the default subject starts from its phrases too."""
        known = await self.catalog.phrases(subject)
        if known is None and subject_name(subject) == self.defaults.subject:
            known = (self.defaults.instance_phrase, self.defaults.class_phrase)
        instance = options.instance_phrase or (known[0] if known else None)
        class_phrase = options.class_phrase or (known[1] if known else None)
        if not instance or not class_phrase:
            raise InvalidRequest(
                f"`{subject_name(subject)}` is a new subject: give `instance_phrase` (the words for it, e.g. 'sks cat') "
                "and `class_phrase` (what kind of thing it is, e.g. 'cat')."
            )
        return build(
            TrainRequest, job_id=new_id(), subject=subject, instance_phrase=instance.strip(),
            class_phrase=class_phrase.strip(), images=(ImageSource(name="pending"),), steps=options.steps,
            requested_by=context.user_name or context.user_id,
        )

    def _sources(self, subject: str, options: TrainOptions) -> list[ImageSource | Path | str]:
        words = options.urls.split()
        sources: list[ImageSource | Path | str] = []
        for word in words:
            if options.local_files and not _LINK.match(word):
                sources.extend(_local_images(Path(word).expanduser()))
            else:
                sources.append(ImageSource(url=word, name=word))  # a link and only a link, never a path
        sources.extend(options.attachments)
        if not sources and not options.pre_rejected and subject == self.defaults.subject:
            if self.defaults.images_file_url:
                sources.append(ImageSource(url=self.defaults.images_file_url))
        if not sources and not options.pre_rejected:
            raise InvalidRequest("No images: give image links in `urls`, or attach images (image1 ... image8).")
        if not sources:
            raise IntakeError(_with_rejections("No usable images.", options.pre_rejected))
        return sources

    def _save_images(self, request: TrainRequest) -> None:
        directory = self.jobs_dir / request.job_id
        directory.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(request.images):
            (directory / f"{index:02d}.png").write_bytes(image.data or b"")

    def _load_request(self, record: JobRecord) -> TrainRequest:
        fields = dict(record.request)
        names = fields.pop("images")
        directory = self.jobs_dir / record.job_id
        images = tuple(
            ImageSource(data=(directory / f"{index:02d}.png").read_bytes(), name=name)
            for index, name in enumerate(names)
        )
        return TrainRequest(**fields, images=images)


def _request_json(request: TrainRequest) -> dict:
    """The request without image bytes (those are files next to the store); names keep their order."""
    data = json.loads(request.model_dump_json(exclude={"images"}))
    data["images"] = [image.name for image in request.images]
    return data


def _local_images(path: Path) -> Sequence[Path]:
    """A file, or every image file in a folder (sorted): the shell's way to pass a set of photos."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [path]


def _with_rejections(message: str, rejected: Sequence[Rejection]) -> str:
    return "\n".join([message, *(f"- {r.name}: {r.reason}" for r in rejected)])


def progress_summary(progress: TrainProgress) -> str:
    """One line for every front end: "training, step 10/100 (10%), loss 0.5000, about 2 min left"."""
    text = progress.state
    if progress.total_steps:
        text += f", step {progress.step}/{progress.total_steps} ({100 * progress.step // progress.total_steps}%)"
    if progress.loss is not None:
        text += f", loss {progress.loss:.4f}"
    if progress.eta_s:
        text += f", about {max(1, round(progress.eta_s / 60))} min left"
    return text
