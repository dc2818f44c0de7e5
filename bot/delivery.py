"""Answering an admitted generation in Discord: ack, wait and render with progress, send, then log.

/qwerty, Reroll and Variations all end here, so a request is answered the same way whatever started it.
The progress message carries a Cancel button: the requester's click stops the request, waiting (it
leaves the queue and frees the member's place) or rendering (the engine stops at its next step).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from bot import render
from bot.acks import AcksFirst
from bot.components import generation_view, progress_view
from bot.errors import NO_MENTIONS
from bot.progress import ProgressMessage
from bot.tasks import TaskOwner
from commands.community import CommunityService, message_link
from commands.errors import MemberError
from commands.generate import Generation
from commands.qwerty import Admission, QwertyService, Rendering

log = logging.getLogger(__name__)
FIRST_PROGRESS_AFTER_S = 1.0  # a request answered sooner never shows progress
Prepare = Callable[[Admission], Awaitable[Admission]]  # work after the ack, before the queue (a download)
PREVIEW_NAME = "preview.png"


class CannotCancel(MemberError):
    """The request has finished, or was asked for by someone else."""


@dataclass(frozen=True)
class _InFlight:
    task: asyncio.Task
    user_id: str


class GenerationDelivery:
    def __init__(
        self, qwerty: QwertyService, community: CommunityService, tasks: TaskOwner, *, progress_interval_s: float
    ) -> None:
        self.qwerty = qwerty
        self.community = community
        self.tasks = tasks
        self.progress_interval_s = progress_interval_s
        self._in_flight: dict[str, _InFlight] = {}  # job id -> its answering task, while it runs
        self._cancelled: set[str] = set()  # job ids their requester cancelled, until `deliver` sees it
        self.acks = AcksFirst()

    async def deliver(
        self, interaction: discord.Interaction, admission: Admission, prepare: Prepare | None = None
    ) -> None:
        """Ack an admitted request, then answer it with one message holding the images."""
        try:
            async with self.acks.acknowledging():
                ack = await interaction.response.defer(thinking=True)
        except BaseException:
            admission.cancel()
            raise
        original_id = ack.message_id if ack else None
        work = self._answer(interaction, admission, original_id, prepare)
        try:
            await self.tasks.run(work, name=f"qwerty-{interaction.id}")
        except asyncio.CancelledError:
            if admission.job_id not in self._cancelled or _being_cancelled():
                raise  # a shutdown
        finally:
            self._cancelled.discard(admission.job_id)

    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        """The Cancel button: only the requester; the message then says "Cancelled."."""
        flight = self._in_flight.get(job_id)
        if flight is None or flight.task.done():
            raise CannotCancel("This request is no longer running.")
        if str(interaction.user.id) != flight.user_id:
            raise CannotCancel("Only the member who asked for these images can cancel them.")
        await interaction.response.defer()
        self._cancelled.add(job_id)
        flight.task.cancel()
        # The task ends at once (its place in the queue goes with it); the engine stops at its next step.
        await asyncio.wait({flight.task})
        if not flight.task.cancelled():
            return  # it finished first: the images are posted
        try:
            await self.qwerty.record_cancelled(job_id)
        except Exception:  # the member asked for nothing more than the stop
            log.exception("could not record %s as cancelled", job_id)
        await interaction.edit_original_response(content="Cancelled.", attachments=[], view=None)

    async def _answer(
        self, interaction: discord.Interaction, admission: Admission, original_id: int | None,
        prepare: Prepare | None,
    ) -> None:
        self._in_flight[admission.job_id] = _InFlight(asyncio.current_task(), admission.context.user_id)
        try:
            await self._answer_tracked(interaction, admission, original_id, prepare)
        finally:
            self._in_flight.pop(admission.job_id, None)

    async def _answer_tracked(
        self, interaction: discord.Interaction, admission: Admission, original_id: int | None,
        prepare: Prepare | None,
    ) -> None:
        try:
            await self.acks.settled()  # in a burst, every member's "thinking…" before anyone's work
            if prepare is not None:
                admission = await prepare(admission)
        except BaseException:  # a Cancel click or a shutdown: the place in the queue goes back
            admission.cancel()
            raise
        progress = ProgressMessage(
            _progress_editor(interaction, admission.job_id),
            interval_s=self.progress_interval_s, first_delay_s=FIRST_PROGRESS_AFTER_S,
        )
        async with progress:
            generation = await self.qwerty.run(admission, lambda update: _show(progress, update))
        self._in_flight.pop(admission.job_id, None)  # the images are drawn: too late to cancel
        spoiler = await self.community.spoiler(generation.context.guild_id)
        reply = render.generation_reply(generation, interaction.filesize_limit, spoiler=spoiler)
        shown = [image.index for image in generation.result.images if image.png is not None]
        message = await interaction.followup.send(
            reply.content, files=reply.files(), view=generation_view(generation.generation_id, shown),
            allowed_mentions=NO_MENTIONS, wait=True,
        )
        await self._after_reply(interaction, generation, message, edited=progress.edits > 0, original_id=original_id)

    async def _after_reply(
        self, interaction: discord.Interaction, generation: Generation, message: discord.Message,
        *, edited: bool, original_id: int | None,
    ) -> None:
        """The W&B rows with the reply's link; the progress message goes once the answer is there."""
        link = message_link(str(interaction.guild_id or "@me"), str(message.channel.id), str(message.id))
        try:
            await self.qwerty.finish(generation, str(message.id), link)
            # After a progress edit Discord posts the follow-up as a new message (before one, the
            # follow-up replaces the "thinking…" message): one message per answer either way.
            if edited and original_id is not None and original_id != message.id:
                await interaction.delete_original_response()
        except Exception:  # the member has their images; nothing to tell them
            log.exception("after replying to interaction %s", interaction.id)


def _show(progress: ProgressMessage, update) -> None:
    preview = update.preview_png if isinstance(update, Rendering) else None
    progress.show(render.queue_update(update), preview)


def _progress_editor(interaction: discord.Interaction, job_id: str):
    """Edits of the "thinking…" message: the text, the Cancel button, and the newest preview if any."""
    view: discord.ui.View | None = None  # built at the first edit: most answers come before any

    async def edit(text: str, preview_png: bytes | None = None) -> None:
        nonlocal view
        view = view or progress_view(job_id)
        if preview_png is None:
            await interaction.edit_original_response(content=text, view=view)
        else:
            preview = discord.File(io.BytesIO(preview_png), filename=PREVIEW_NAME)
            await interaction.edit_original_response(content=text, view=view, attachments=[preview])

    return edit


def _being_cancelled() -> bool:
    """Whether the task running now has a cancel of its own pending (a shutdown of the handler)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
