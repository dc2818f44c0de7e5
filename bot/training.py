"""/train in Discord: the admin check, the intake, then a training that outlives its interaction.

An interaction token dies after 15 minutes, so once the images are in, the training belongs to the
bot (a task it owns) and speaks through channel messages sent with the bot's token: one progress
message edited as it goes, then a new message with the result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import discord

from bot import render
from bot.errors import NO_MENTIONS, post_error
from bot.progress import ProgressMessage
from bot.settings import BotSettings
from bot.tasks import TaskOwner
from bot.wiring import AppServices
from commands.context import RequestContext
from commands.jobs import JobRecord
from commands.permissions import AdminPolicy, Caller
from commands.train import PreparedTraining, TrainOptions
from gpu_service.client import TrainProgressCallback
from gpu_service.intake import Rejection
from gpu_service.intake.models import describe_size
from gpu_service.schemas import ImageSource, TrainProgress, TrainResult
from gpu_service.subjects import subject_name

log = logging.getLogger(__name__)
Work = Callable[[TrainProgressCallback], Awaitable[TrainResult]]


class TrainingDesk:
    def __init__(
        self, app: AppServices, settings: BotSettings, tasks: TaskOwner, client: discord.Client,
        admins: AdminPolicy,
    ) -> None:
        self.app = app
        self.settings = settings
        self.tasks = tasks
        self.client = client
        self.admins = admins

    async def train(
        self, interaction: discord.Interaction, options: TrainOptions, attachments: list[discord.Attachment],
        context: RequestContext, caller: Caller,
    ) -> None:
        """Refuse non-admins before anything starts; otherwise take the images in and hand over."""
        self.admins.require(caller)
        await interaction.response.defer(thinking=True, ephemeral=True)  # a refusal is for the admin alone

        async def with_attachments(given: TrainOptions) -> TrainOptions:
            return await self._with_attachments(given, attachments)

        async with self.app.training.preparing(options, context, caller, with_attachments) as prepared:
            started = render.training_started(prepared, "posted below in this channel")
            await interaction.edit_original_response(content=started, allowed_mentions=NO_MENTIONS)
            self.tasks.spawn(self._run(prepared, self._channel(context)), name=f"train-{prepared.job_id}")

    async def resume(self, record: JobRecord) -> None:
        """After a restart: continue a training and report in its channel, as if it had never stopped."""
        channel = self._channel(record.context)
        subject = record.request.get("subject", "?")
        status_id = int(record.message_id) if record.message_id else None
        if status_id is None:
            resuming = render.clip(f"Training `{subject_name(subject)}`: resuming after a restart…")
            status_id = (await channel.send(resuming, allowed_mentions=NO_MENTIONS)).id
            await self.app.jobs.update(record.job_id, message_id=str(status_id))

        def work(on_progress: TrainProgressCallback) -> Awaitable[TrainResult]:
            return self.app.training.resume(record, on_progress)

        await self._follow(subject, channel, status_id, record.user_id, work, f"resumed training {record.job_id}")

    async def _run(self, prepared: PreparedTraining, channel: discord.PartialMessageable) -> None:
        subject = prepared.request.subject
        try:
            queued = TrainProgress(job_id=prepared.job_id, state="queued")
            status = await channel.send(render.train_progress(subject, queued), allowed_mentions=NO_MENTIONS)
            await self.app.jobs.update(prepared.job_id, message_id=str(status.id))
        except BaseException as error:
            # Never started, and nowhere to report it (no Send Messages here, say): a job left "queued"
            # would be resumed, and fail to report, at every restart.
            await self.app.training.abandon(prepared, f"could not post in the channel: {error!r}")
            raise

        def work(on_progress: TrainProgressCallback) -> Awaitable[TrainResult]:
            return self.app.training.run(prepared, on_progress)

        await self._follow(subject, channel, status.id, prepared.context.user_id, work,
                           f"training {prepared.job_id}")

    async def _follow(
        self, subject: str, channel: discord.PartialMessageable, status_id: int, requested_by: str,
        work: Work, where: str,
    ) -> None:
        """Run `work`, editing the status message as it goes; post the result (or the error)."""
        status = channel.get_partial_message(status_id)
        editor = ProgressMessage(lambda text: status.edit(content=text), interval_s=self.settings.PROGRESS_INTERVAL_S)
        try:
            async with editor:
                result = await work(lambda progress: editor.show(render.train_progress(subject, progress)))
        except asyncio.CancelledError:
            raise  # a shutdown: the job stays "running" and the next start resumes it
        except Exception as error:
            await post_error(channel, error, where)
            return
        reply = render.training_result(result, requested_by)
        mentions = discord.AllowedMentions(users=True, everyone=False, roles=False, replied_user=False)
        try:
            await channel.send(reply.content, files=reply.files(), allowed_mentions=mentions)
        except discord.HTTPException:  # no Attach Files here, say: the news matters more than the samples
            log.warning("could not post the samples of %s; posting the text alone", where, exc_info=True)
            await channel.send(reply.content, allowed_mentions=mentions)
        done = f"Training `{result.version.name}`: done, v{result.version.version} is live."
        try:
            await status.edit(content=done)
        except discord.HTTPException:
            log.warning("could not mark the progress message of %s done", where)

    async def _with_attachments(self, options: TrainOptions, attachments: list[discord.Attachment]) -> TrainOptions:
        """Attached images as bytes; one too large is refused from its declared size, never downloaded."""
        limit = self.settings.MAX_IMAGE_BYTES
        fits = [a for a in attachments if a.size <= limit]
        too_large = tuple(Rejection(a.filename, f"larger than {describe_size(limit)}") for a in attachments
                          if a.size > limit)
        async with asyncio.timeout(self.settings.INTAKE_TIMEOUT_S):
            data = await asyncio.gather(*(a.read() for a in fits))
        images = tuple(ImageSource(data=blob, name=a.filename) for a, blob in zip(fits, data))
        return replace(options, attachments=images, pre_rejected=too_large)

    def _channel(self, context: RequestContext) -> discord.PartialMessageable:
        guild_id = int(context.guild_id) if context.guild_id else None
        return self.client.get_partial_messageable(int(context.channel_id), guild_id=guild_id)
