"""Answering an admitted generation in Discord: ack, wait and render with progress, send, then log.

/qwerty, Reroll and Variations all end here, so a request is answered the same way whatever started it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord

from bot import render
from bot.components import generation_view
from bot.errors import NO_MENTIONS
from bot.progress import ProgressMessage
from bot.tasks import TaskOwner
from commands.community import CommunityService, message_link
from commands.generate import Generation
from commands.qwerty import Admission, QwertyService

log = logging.getLogger(__name__)
FIRST_PROGRESS_AFTER_S = 1.0  # a request answered sooner never shows progress
Prepare = Callable[[Admission], Awaitable[Admission]]  # work after the ack, before the queue (a download)


class GenerationDelivery:
    def __init__(
        self, qwerty: QwertyService, community: CommunityService, tasks: TaskOwner, *, progress_interval_s: float
    ) -> None:
        self.qwerty = qwerty
        self.community = community
        self.tasks = tasks
        self.progress_interval_s = progress_interval_s

    async def deliver(
        self, interaction: discord.Interaction, admission: Admission, prepare: Prepare | None = None
    ) -> None:
        """Ack an admitted request, then answer it with one message holding the images."""
        try:
            ack = await interaction.response.defer(thinking=True)
        except BaseException:
            admission.cancel()
            raise
        original_id = ack.message_id if ack else None
        work = self._answer(interaction, admission, original_id, prepare)
        await self.tasks.run(work, name=f"qwerty-{interaction.id}")

    async def _answer(
        self, interaction: discord.Interaction, admission: Admission, original_id: int | None,
        prepare: Prepare | None,
    ) -> None:
        if prepare is not None:
            try:
                admission = await prepare(admission)
            except BaseException:
                admission.cancel()
                raise
        progress = ProgressMessage(
            lambda text: interaction.edit_original_response(content=text),
            interval_s=self.progress_interval_s, first_delay_s=FIRST_PROGRESS_AFTER_S,
        )
        async with progress:
            generation = await self.qwerty.run(admission, lambda update: progress.show(render.queue_update(update)))
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
