"""What each slash command does in Discord: check, defer, call commands/, render. Nothing more.

/qwerty is here (and `deliver`, which Reroll and Variations reuse); /train is bot.training, the buttons
bot.buttons, the gallery and admin commands bot.admin. Errors are not caught here: they reach the
tree's one handler (bot.errors.answer_error).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from bot import render
from bot.admin import AdminDesk, caller_of
from bot.buttons import ButtonDesk
from bot.components import generation_view
from bot.errors import NO_MENTIONS
from bot.progress import ProgressMessage
from bot.settings import BotSettings
from bot.tasks import TaskOwner
from bot.training import TrainingDesk
from bot.wiring import AppServices
from commands.context import RequestContext
from commands.generate import GenerateOptions, Generation
from commands.permissions import AdminPolicy
from commands.qwerty import Admission
from commands.train import TrainOptions

log = logging.getLogger(__name__)
FIRST_PROGRESS_AFTER_S = 1.0  # a request answered sooner never shows progress
Prepare = Callable[[Admission], Awaitable[Admission]]  # work after the ack, before the queue (a download)


def request_context(interaction: discord.Interaction) -> RequestContext:
    return RequestContext(
        front_end="discord", user_id=str(interaction.user.id), user_name=interaction.user.name,
        guild_id=str(interaction.guild_id or ""), channel_id=str(interaction.channel_id or ""),
        interaction_id=str(interaction.id),
    )


class Handlers:
    def __init__(
        self, app: AppServices, settings: BotSettings, tasks: TaskOwner, client: discord.Client
    ) -> None:
        self.app = app
        self.settings = settings
        self.tasks = tasks
        self.admins = AdminPolicy.of(settings.ADMIN_USER_IDS, settings.ADMIN_ROLE_IDS)
        self.training = TrainingDesk(app, settings, tasks, client, self.admins)
        self.buttons = ButtonDesk(app, self, client)
        self.admin = AdminDesk(app, self.admins)

    def context(self, interaction: discord.Interaction) -> RequestContext:
        return request_context(interaction)

    async def qwerty(self, interaction: discord.Interaction, options: GenerateOptions) -> None:
        """/qwerty: a place in the queue (or a refusal), the ack, progress, then one message with the images."""
        admission = self.app.qwerty.admit(options, request_context(interaction))
        await self.deliver(interaction, admission)

    async def deliver(
        self, interaction: discord.Interaction, admission: Admission, prepare: Prepare | None = None
    ) -> None:
        """Ack an admitted request, then answer it like /qwerty (Reroll and Variations come here too)."""
        try:
            ack = await interaction.response.defer(thinking=True)
        except BaseException:
            admission.cancel()
            raise
        original_id = ack.message_id if ack else None
        work = self._generate(interaction, admission, original_id, prepare)
        await self.tasks.run(work, name=f"qwerty-{interaction.id}")

    async def _generate(
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
            interval_s=self.settings.PROGRESS_INTERVAL_S, first_delay_s=FIRST_PROGRESS_AFTER_S,
        )
        async with progress:
            generation = await self.app.qwerty.run(admission, lambda update: progress.show(render.queue_update(update)))
        spoiler = self.app.community.spoiler(generation.context.guild_id)
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
        link = render.message_link(interaction.guild_id, message.channel.id, message.id)
        try:
            await self.app.qwerty.finish(generation, str(message.id), link)
            # After a progress edit Discord posts the follow-up as a new message (before one, the
            # follow-up replaces the "thinking…" message): one message per answer either way.
            if edited and original_id is not None and original_id != message.id:
                await interaction.delete_original_response()
        except Exception:  # the member has their images; nothing to tell them
            log.exception("after replying to interaction %s", interaction.id)

    async def train(
        self, interaction: discord.Interaction, options: TrainOptions, attachments: list[discord.Attachment]
    ) -> None:
        await self.training.train(interaction, options, attachments, request_context(interaction),
                                  caller_of(interaction))

    async def subject_choices(self, typed: str) -> list[app_commands.Choice[str]]:
        versions = await self.app.subjects.matching(typed)
        return [
            app_commands.Choice(name=render.clip(f"{v.subject}: {v.instance_phrase} (v{v.version})", 100),
                                value=v.subject)
            for v in versions
        ]
