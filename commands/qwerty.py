"""The /qwerty use case for every front end: validation, admission (limits), a job record, the queue,
generation and the W&B log. Discord, the shell, `make inference` and the buttons all come here.

    admission = qwerty.admit(options, context)        # sync: validates and takes a place, or raises
    generation = await qwerty.run(admission, on_update)  # waits its turn, renders, records the job
    await qwerty.finish(generation, message_id, link)  # after the reply: W&B row with the message link

    generation = await qwerty.generate(options, context)  # the three at once, for a front end with no reply

W&B rows are written in `finish`, after the front end has replied, so each row carries the link of
the message that shows its image.

Before any GPU time: the prompt is checked against the guild's banned words (`prompt_check`, at
admission). Before rendering: a request that names no subject version is pinned to the version the
bot knows is live (`catalog`), so a rollback takes effect at the next request on every backend (a
Modal container that has not seen that version reloads its registry first). When the images are back,
those with pixels are kept in the image store (Share and Variations read them later) and the job's
result records seeds, withheld images, prompt and version: everything a button needs after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from commands.context import RequestContext
from commands.generate import GenerateOptions, Generation, GenerationLog, Refusal, new_id
from commands.images import ImageStore
from commands.jobs import JobRecord, JobStore
from commands.queue import FairQueue, Ticket
from commands.recovery import CANCELLED
from commands.subjects import SubjectCatalog
from commands.validation import build
from gpu_service.client import GpuClient
from gpu_service.errors import GpuTimeout, InvalidRequest
from gpu_service.schemas import GenerateRequest, GenerationProgress
from gpu_service.settings import SUBJECT_NAME_PATTERN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queued:
    position: int  # 1 = next


@dataclass(frozen=True)
class Rendering:
    step: int
    total_steps: int
    preview_png: bytes | None = None  # a rough look at the image so far, every few steps


@dataclass(frozen=True)
class Warming:
    about_s: int  # the GPU service is starting a container first; roughly how long that takes


Update = Queued | Warming | Rendering
UpdateCallback = Callable[[Update], None]
PromptCheck = Callable[[RequestContext, GenerateRequest], None]  # raises to refuse (banned words)
ServerDefaults = Callable[[str], Mapping[str, Any]]  # guild id -> the options its admins set defaults for


@dataclass(frozen=True)
class Admission:
    job_id: str
    request: GenerateRequest
    context: RequestContext
    ticket: Ticket
    source_row_id: str = ""  # Variations: the image it starts from (recorded, so Reroll can reuse it)

    def cancel(self) -> None:
        """Give the place back (the front end could not acknowledge the request)."""
        self.ticket.release()

    def with_init_image(self, png: bytes) -> Admission:
        """The image-to-image start, once the front end has fetched it (after acknowledging)."""
        return replace(self, request=self.request.model_copy(update={"init_image": png}))


class QwertyService:
    def __init__(
        self, client: GpuClient, queue: FairQueue, jobs: JobStore, log: GenerationLog, *, default_subject: str,
        images: ImageStore, catalog: SubjectCatalog, prompt_check: PromptCheck, timeout_s: float = 300.0,
        server_defaults: ServerDefaults = lambda guild_id: {},
    ) -> None:
        self.client = client
        self.default_subject = default_subject
        self.queue = queue
        self.jobs = jobs
        self.log = log
        self.timeout_s = timeout_s
        self.images = images
        self.catalog = catalog
        self.prompt_check = prompt_check
        self.server_defaults = server_defaults

    def admit(self, options: GenerateOptions, context: RequestContext, *, source_row_id: str = "") -> Admission:
        """Validate, check the prompt and take a place in the queue; InvalidRequest (a banned word among
        them) or LimitReached, before any ack and any GPU time. A refused prompt is logged too."""
        try:
            request = self.build_request(options, context.guild_id)
            if context.front_end == "discord" and not re.fullmatch(SUBJECT_NAME_PATTERN, request.subject):
                # a key names another server's subject: members type names, resolved in their own server
                raise InvalidRequest("`subject` may use a-z, 0-9, _ and -, up to 32 characters.")
            self.prompt_check(context, request)
            ticket = self.queue.reserve(context.user_id or context.front_end)
        except Exception as error:
            self.log.log_refusal(Refusal(new_id(), options, context, _describe(error)))
            raise
        return Admission(new_id(), request, context, ticket, source_row_id)

    def build_request(self, options: GenerateOptions, guild_id: str = "") -> GenerateRequest:
        """Validate before any GPU time is spent; the InvalidRequest names each bad field. Options the member
        left empty take the server's defaults (read from memory), then the bot's."""
        given = {name: value for name, value in vars(options).items() if value is not None}
        for name, value in self.server_defaults(guild_id).items():
            given.setdefault(name, value)
        given.setdefault("subject", self.default_subject)
        return build(GenerateRequest, **given)

    async def generate(
        self, options: GenerateOptions, context: RequestContext, on_update: UpdateCallback | None = None
    ) -> Generation:
        """Admit, run and log in one call, for a front end that has no message to link (the CLI)."""
        generation = await self.run(self.admit(options, context), on_update)
        await self.finish(generation)
        return generation

    async def run(self, admission: Admission, on_update: UpdateCallback | None = None) -> Generation:
        """Wait for a GPU slot, generate, and record the job: "done", or "failed" with the error. A
        cancellation (a shutdown) leaves it unfinished for the next start to report."""
        report = on_update or _ignore
        request_json = admission.request.model_dump(mode="json", exclude={"init_image"})
        if admission.source_row_id:
            request_json["source_row_id"] = admission.source_row_id
        async with admission.ticket:
            await self.jobs.add(JobRecord.new(admission.job_id, "generate", admission.context, request_json))
            try:
                await admission.ticket.wait_turn(lambda position: report(Queued(position)))
                await self.jobs.update(admission.job_id, state="running")
                generation = await self._generate(admission, report)
            except asyncio.CancelledError:
                raise  # a shutdown: the job stays unfinished, and the next start reports it
            except Exception as error:
                await _shielded(self.jobs.update(admission.job_id, state="failed", error=_describe(error)))
                raise
        await self._keep_images(generation)
        await self._record_done(generation)
        return generation

    async def _record_done(self, generation: Generation) -> None:
        """Record "done"; if the store fails now, the member still gets the images drawn, and the record
        is written once more behind whatever the store is doing (SQLite's busy timeout waits for a lock)."""
        done = {"state": "done", "result": result_json(generation)}
        try:
            await self.jobs.update(generation.generation_id, **done)
        except Exception:
            log.exception("could not record %s as done; trying once more", generation.generation_id)
            self.jobs.update_soon(generation.generation_id, **done)

    async def record_cancelled(self, job_id: str) -> None:
        """The requester stopped it: recorded as failed by choice, which no restart reports or resumes. A job
        not recorded yet (its source image was still downloading) has nothing to mark."""
        if await self.jobs.get(job_id) is not None:
            await self.jobs.update(job_id, state="failed", error=CANCELLED)

    async def finish(self, generation: Generation, message_id: str = "", message_link: str = "") -> None:
        """After the reply: log the W&B rows (with the message link) and remember the message."""
        if message_link:
            generation = replace(generation, context=replace(generation.context, message_link=message_link))
        self.log.log_generation(generation)
        if message_id:
            await self.jobs.update(generation.generation_id, message_id=message_id)

    async def _keep_images(self, generation: Generation) -> None:
        try:
            await asyncio.to_thread(self.images.save, generation)
        except OSError:  # the member still gets the images; Share falls back to the message's copy
            log.exception("could not keep the images of %s", generation.generation_id)

    async def _pinned(self, request: GenerateRequest, context: RequestContext) -> GenerateRequest:
        """The subject key the name means in this server (its own subject, else the global one), and the
        live version of it (see the module docstring); unknown: leave the version to the backend."""
        key = await self.catalog.resolve(request.subject, context.guild_id)
        request = request.model_copy(update={"subject": key})
        if request.subject_version is not None:
            return request
        live = await self.catalog.live_version(request.subject)
        return request if live is None else request.model_copy(update={"subject_version": live})

    async def _generate(self, admission: Admission, report: UpdateCallback) -> Generation:
        def on_progress(progress: GenerationProgress) -> None:
            if progress.warming_s is not None:
                report(Warming(round(progress.warming_s)))
            else:
                report(Rendering(progress.step, progress.total_steps, progress.preview_png))

        listener = None if report is _ignore else on_progress  # nobody listening: no per-step callbacks

        try:
            async with asyncio.timeout(self.timeout_s):
                request = await self._pinned(admission.request, admission.context)
                result = await self.client.generate(request, listener)
                return Generation(admission.job_id, request, result, admission.context)
        except TimeoutError:
            raise GpuTimeout(f"The images were not ready within {self.timeout_s:g} s.") from None


def result_json(generation: Generation) -> dict:
    """What a job record keeps of a finished generation: enough for every button after a restart."""
    result = generation.result
    return {
        "row_ids": [generation.row_id(image.index) for image in result.images],
        "seeds": [image.seed for image in result.images],
        "withheld": [image.index for image in result.images if image.withheld],
        "prompt": result.prompt,
        "subject": result.subject,
        "version": result.version,
    }


def _ignore(update: Update) -> None:
    pass


async def _shielded(work) -> None:
    """Record an outcome; a failure to record must not hide the error being reported."""
    try:
        await work
    except Exception:
        log.exception("could not record a job's outcome")


def _describe(error: BaseException) -> str:
    return f"{error.__class__.__name__}: {error}"[:500]
