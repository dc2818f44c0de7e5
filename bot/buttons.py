"""What a click on a generation's or a gallery post's button does in Discord: check, ack, call
commands/actions.py, render. Reroll, Variations, an Edit form's submit and the "Vary this image" menu
are answered like /qwerty (bot.delivery).

Refusals (not the requester, a banned word, a withheld image) are raised before the ack, so the
central handler answers them ephemerally; work after the ack edits the ack's message.
"""

from __future__ import annotations

import asyncio
import io
import logging

import discord

from bot import custom_ids, render
from bot.components import EditPrompt, gallery_view, picker_view
from bot.context import request_context
from bot.custom_ids import Action
from bot.delivery import GenerationDelivery
from bot.errors import NO_MENTIONS
from bot.wiring import AppServices
from commands.actions import GenerationGone, PromptParts, StoredGeneration
from commands.community import Share, gallery_caption
from commands.community.errors import CommunityError
from commands.jobs import JobRecord
from commands.qwerty import Admission

log = logging.getLogger(__name__)
FETCH_TIMEOUT_S = 20.0


def moderator(interaction: discord.Interaction) -> bool:
    return interaction.permissions.manage_messages


def _component_ids(message: discord.Message) -> list[str]:
    return [child.custom_id for row in message.components for child in getattr(row, "children", ())
            if getattr(child, "custom_id", None)]


def row_id_of(filename: str) -> str:
    """The row id an attachment was named after (`SPOILER_<row>.png`, `<row>.jpg`)."""
    return filename.removeprefix("SPOILER_").rsplit(".", 1)[0]


def _shared_image(message: discord.Message) -> tuple[str, int] | None:
    """The (job id, image index) of a gallery post's image, read from its attachment's name."""
    for attachment in message.attachments:
        job_id, _, index = row_id_of(attachment.filename).rpartition("-")
        if job_id and index.isdigit():
            return job_id, int(index)
    return None


class ButtonDesk:
    def __init__(self, app: AppServices, delivery: GenerationDelivery, client: discord.Client) -> None:
        self.app = app
        self.actions = app.actions
        self.delivery = delivery
        self.client = client

    # Reroll and Variations

    async def reroll(self, interaction: discord.Interaction, job_id: str) -> None:
        stored = await self.actions.load(job_id)
        admission = self.actions.reroll(stored, request_context(interaction))
        await self.delivery.deliver(interaction, admission, prepare=self._with_source_image)

    async def variations(self, interaction: discord.Interaction, job_id: str, index: int | None) -> None:
        stored = await self.actions.load(job_id)
        if index is None:
            await self._pick(interaction, Action.VARIATIONS, stored)
            return
        admission = self.actions.variations(stored, index, request_context(interaction))
        await self.delivery.deliver(interaction, admission, prepare=self._with_source_image)

    async def vary_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The "Vary this image" menu on a picture message of ours: like its Variations button. On a
        gallery post, the shared image (its attachment is named after its row id, `<job>-<index>`)."""
        ours = self.client.user is not None and message.author.id == self.client.user.id
        job_id = custom_ids.job_of(_component_ids(message)) if ours else None
        if job_id is not None:
            await self.variations(interaction, job_id, None)
            return
        shared = _shared_image(message) if ours else None
        if shared is None:
            raise GenerationGone("I can only vary pictures I made: use this on a message with my pictures.")
        await self.variations(interaction, *shared)

    # Edit

    async def edit(self, interaction: discord.Interaction, job_id: str) -> None:
        stored = await self.actions.load(job_id)
        await interaction.response.send_modal(EditPrompt(job_id, stored.prompt_parts))

    async def edited(self, interaction: discord.Interaction, job_id: str, parts: PromptParts) -> None:
        stored = await self.actions.load(job_id)
        admission = self.actions.edit(stored, parts, request_context(interaction))
        await self.delivery.deliver(interaction, admission)

    async def _with_source_image(self, admission: Admission) -> Admission:
        return await self.actions.with_source_image(admission, self.fetch_image)

    async def _pick(self, interaction: discord.Interaction, action: Action, stored: StoredGeneration) -> None:
        shown = stored.visible
        if len(shown) < 2:  # the message offers no menu then; an old or odd click still gets an answer
            index = shown[0] if shown else 0
            await (self.variations if action is Action.VARIATIONS else self.share)(interaction, stored.job_id, index)
            return
        view = picker_view(action, stored.job_id, shown, stored.seeds)
        await interaction.response.send_message("Pick an image:", view=view, ephemeral=True)

    # Share

    async def share(self, interaction: discord.Interaction, job_id: str, index: int | None) -> None:
        stored = await self.actions.load(job_id)
        if index is None:
            await self._pick(interaction, Action.SHARE, stored)
            return
        guild_id = str(interaction.guild_id or "")
        decision = await self.actions.begin_share(stored, index, guild_id, str(interaction.user.id))
        if not decision.should_post:
            await interaction.response.send_message(decision.message, ephemeral=True)
            return
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except BaseException:
            await self.app.community.abandon_share(decision.share.share_id)
            raise
        share = await self.actions.post_share(decision, self._post, self.fetch_image, self._retract)
        await interaction.edit_original_response(content=f"Shared to the gallery: {share.link}")

    async def _post(self, share: Share, png: bytes) -> tuple[str, str]:
        spoiler = await self.app.community.spoiler(share.guild_id)
        channel = self.client.get_partial_messageable(int(share.channel_id), guild_id=int(share.guild_id))
        extension = "png" if png.startswith(b"\x89PNG") else "jpg"
        name = f"{'SPOILER_' if spoiler else ''}{share.row_id}.{extension}"
        try:
            message = await channel.send(
                render.clip(gallery_caption(share)), file=discord.File(io.BytesIO(png), filename=name),
                view=gallery_view(share.share_id, 0), allowed_mentions=NO_MENTIONS,  # credit, never a ping
            )
        except (discord.Forbidden, discord.NotFound):
            raise CommunityError(
                f"I can't post in the gallery channel <#{share.channel_id}> (deleted, or no permission there); "
                "an admin can choose another with /gallery."
            ) from None
        return str(message.channel.id), str(message.id)

    async def _retract(self, channel_id: str, message_id: str) -> None:
        try:
            await self.client.get_partial_messageable(int(channel_id)).get_partial_message(int(message_id)).delete()
        except discord.HTTPException:
            log.warning("could not retract gallery post %s", message_id, exc_info=True)

    async def fetch_image(self, record: JobRecord, row_id: str) -> bytes | None:
        """The image store lost it: download it from the generation message's own attachment."""
        if not (record.channel_id and record.message_id):
            return None
        channel = self.client.get_partial_messageable(int(record.channel_id))
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                message = await channel.fetch_message(int(record.message_id))
                for attachment in message.attachments:
                    if row_id_of(attachment.filename) == row_id:
                        return await attachment.read()
        except (discord.HTTPException, TimeoutError):
            log.warning("could not fetch image %s from message %s", row_id, record.message_id, exc_info=True)
        return None

    # Delete

    async def delete(self, interaction: discord.Interaction, job_id: str) -> None:
        stored = await self.actions.load(job_id)
        user_id = str(interaction.user.id)
        self.actions.require_delete(stored, user_id, moderator=moderator(interaction))
        await interaction.response.defer()  # acknowledged without a message: the message goes
        if interaction.message is not None:
            try:
                await interaction.message.delete()
            except discord.NotFound:
                pass  # a second click, or already deleted by a moderator: the outcome is the same
        await self.actions.deleted(stored, user_id)

    # The gallery's buttons

    async def vote(self, interaction: discord.Interaction, share_id: str) -> None:
        """⭐ toggles: the member's first click votes, the next takes it back; the label shows the count."""
        guild_id, user_id = str(interaction.guild_id or ""), str(interaction.user.id)
        outcome = await self.actions.toggle_vote(guild_id, share_id, user_id)
        await interaction.response.edit_message(view=gallery_view(share_id, outcome.total))

    async def remove(self, interaction: discord.Interaction, share_id: str) -> None:
        guild_id, user_id = str(interaction.guild_id or ""), str(interaction.user.id)
        share = await self.actions.remove(guild_id, share_id, user_id, moderator=moderator(interaction))
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.message is not None:
            try:
                await interaction.message.delete()
            except discord.NotFound:
                pass  # already gone
        await interaction.edit_original_response(
            content=f"Removed the post by <@{share.creator_id}> from the gallery and from /top.",
            allowed_mentions=NO_MENTIONS,
        )
