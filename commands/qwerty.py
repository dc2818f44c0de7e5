"""The /qwerty use case for front ends: admission (limits), a job record, the queue, generation, the log.

    admission = qwerty.admit(options, context)        # sync: validates and takes a place, or raises
    generation = await qwerty.run(admission, on_update)  # waits its turn, renders, records the job
    await qwerty.finish(generation, message_id, link)  # after the reply: W&B row with the message link

W&B rows are written in `finish`, after the front end has replied, so each row carries the link of
the message that shows its image.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from commands.context import RequestContext
from commands.generate import GenerateOptions, Generation, GenerationLog, GenerationService, new_id
from commands.jobs import JobRecord, JobStore
from commands.queue import FairQueue, Ticket
from gpu_service.errors import GpuTimeout
from gpu_service.schemas import GenerateRequest, GenerationProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queued:
    position: int  # 1 = next


@dataclass(frozen=True)
class Rendering:
    step: int
    total_steps: int


Update = Queued | Rendering
UpdateCallback = Callable[[Update], None]


@dataclass(frozen=True)
class Admission:
    job_id: str
    request: GenerateRequest
    context: RequestContext
    ticket: Ticket

    def cancel(self) -> None:
        """Give the place back (the front end could not acknowledge the request)."""
        self.ticket.release()


class NotLoggedYet:
    """The GenerationService's log for /qwerty: rows are written by QwertyService.finish instead."""

    def log_generation(self, generation: Generation) -> None:
        pass


class QwertyService:
    def __init__(
        self, generation: GenerationService, queue: FairQueue, jobs: JobStore, log: GenerationLog,
        *, timeout_s: float = 300.0,
    ) -> None:
        self.generation = generation
        self.queue = queue
        self.jobs = jobs
        self.log = log
        self.timeout_s = timeout_s

    def admit(self, options: GenerateOptions, context: RequestContext) -> Admission:
        """Validate and take a place in the queue; InvalidRequest or LimitReached, before any ack."""
        request = self.generation.build_request(options)
        ticket = self.queue.reserve(context.user_id or context.front_end)
        return Admission(new_id(), request, context, ticket)

    async def run(self, admission: Admission, on_update: UpdateCallback | None = None) -> Generation:
        """Wait for a GPU slot, generate, and record the job: "done", or "failed" with the error. A
        cancellation (a shutdown) leaves it unfinished for the next start to report."""
        report = on_update or _ignore
        request_json = admission.request.model_dump(mode="json", exclude={"init_image"})
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
        row_ids = [generation.row_id(image.index) for image in generation.result.images]
        await self.jobs.update(admission.job_id, state="done", result={"row_ids": row_ids})
        return generation

    async def finish(self, generation: Generation, message_id: str = "", message_link: str = "") -> None:
        """After the reply: log the W&B rows (with the message link) and remember the message."""
        context = replace(generation.context, message_link=message_link)
        self.log.log_generation(replace(generation, context=context))
        if message_id:
            await self.jobs.update(generation.generation_id, message_id=message_id)

    async def _generate(self, admission: Admission, report: UpdateCallback) -> Generation:
        def on_progress(progress: GenerationProgress) -> None:
            report(Rendering(progress.step, progress.total_steps))

        listener = None if report is _ignore else on_progress  # nobody listening: no per-step callbacks

        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.generation.generate(
                    admission.request, admission.context, listener, generation_id=admission.job_id
                )
        except TimeoutError:
            raise GpuTimeout(f"The images were not ready within {self.timeout_s:g} s.") from None


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
