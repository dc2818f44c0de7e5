"""The gallery, moderation and admin commands in Discord: check, ack, call commands/, render.

Admin-only commands check the admin at run time (commands/permissions.py), like /train: Discord's
default_permissions is only a hint. Refusals and admin answers are ephemeral; /top is for everyone.
"""

from __future__ import annotations

import io

import discord

from bot import render
from bot.context import caller_of
from bot.errors import NO_MENTIONS
from bot.wiring import AppServices
from commands.admin import models_text, rollback_text, status_text
from commands.community.errors import CommunityError
from commands.community.moderation import parse_word_list
from commands.community.settings import SettingsChange, change_settings, settings_text
from commands.export import export_lora
from commands.permissions import AdminPolicy


def guild_of(interaction: discord.Interaction) -> str:
    if interaction.guild_id is None:
        raise CommunityError("This command works in a server, not in direct messages.")
    return str(interaction.guild_id)


async def answer(interaction: discord.Interaction, text: str, *, ephemeral: bool = True) -> None:
    await interaction.response.send_message(render.clip(text), ephemeral=ephemeral, allowed_mentions=NO_MENTIONS)


class AdminDesk:
    def __init__(self, app: AppServices, admins: AdminPolicy) -> None:
        self.app = app
        self.community = app.community
        self.admins = admins

    def require(self, interaction: discord.Interaction, action: str) -> None:
        self.admins.require(caller_of(interaction), action)

    def guild_admin(self, interaction: discord.Interaction, action: str) -> str:
        """The guild id, once the caller is known to be an admin (guild settings need a guild)."""
        self.require(interaction, action)
        return guild_of(interaction)

    async def gallery(self, interaction: discord.Interaction, channel: discord.abc.GuildChannel) -> None:
        guild_id = self.guild_admin(interaction, "set the gallery channel")
        await self.community.set_gallery_channel(guild_id, str(channel.id))
        await answer(interaction, f"Shared images now go to <#{channel.id}>.")

    async def spoiler(self, interaction: discord.Interaction, on: bool) -> None:
        guild_id = self.guild_admin(interaction, "change the spoiler setting")
        await self.community.set_spoiler(guild_id, on)
        state = "now sent as spoilers (blurred until clicked)" if on else "no longer sent as spoilers"
        await answer(interaction, f"New pictures and gallery posts are {state}.")

    async def settings(self, interaction: discord.Interaction, change: SettingsChange) -> None:
        """No change: show the server's settings; else check and store the change, then show them."""
        guild_id = self.guild_admin(interaction, "change this server's settings")
        await interaction.response.defer(ephemeral=True, thinking=True)  # checking a subject asks the backend
        global_subject = self.app.settings.DEFAULT_SUBJECT
        if change:
            settings = await change_settings(self.community, self.app.subjects, guild_id, change,
                                             global_subject=global_subject)
        else:
            settings = await self.community.server_settings(guild_id)
        text = settings_text(settings, global_subject)
        await interaction.edit_original_response(content=render.clip(text), allowed_mentions=NO_MENTIONS)

    async def banned(self, interaction: discord.Interaction, action: str, words: str) -> None:
        guild_id = self.guild_admin(interaction, "manage banned words")
        entries = parse_word_list(words)
        if action != "list" and not entries:
            raise CommunityError(f"Give the words to {action}, separated by commas: `words:one, two`.")
        user_id = str(interaction.user.id)
        if action == "add":
            done = await self.community.add_banned_words(guild_id, entries, by=user_id)
            text = banned_change("Banned", done, len(entries))
        elif action == "remove":
            done = await self.community.remove_banned_words(guild_id, entries)
            text = banned_change("No longer banned", done, len(entries))
        else:
            listed = self.community.banned_words(guild_id)
            text = f"Banned words ({len(listed)}): " + ", ".join(f"`{w}`" for w in listed) if listed else \
                "No banned words."
        await answer(interaction, text)

    async def top(self, interaction: discord.Interaction, period: str) -> None:
        entries = await self.community.top(guild_of(interaction), period)  # type: ignore[arg-type]
        await answer(interaction, render.top_text(entries, period), ephemeral=False)

    async def models(self, interaction: discord.Interaction) -> None:
        self.require(interaction, "list the models")
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = models_text(await self.app.admin.models(caller_of(interaction)))
        await interaction.edit_original_response(content=render.clip(text), allowed_mentions=NO_MENTIONS)

    async def rollback(self, interaction: discord.Interaction, subject: str, version: int | None) -> None:
        self.require(interaction, "roll a subject back")
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = rollback_text(await self.app.admin.rollback(caller_of(interaction), subject.strip().lower(), version))
        await interaction.edit_original_response(content=render.clip(text), allowed_mentions=NO_MENTIONS)

    async def export(self, interaction: discord.Interaction, subject: str, version: int, fmt: str) -> None:
        """The version's LoRA attached to an ephemeral answer, within the upload limit of where it was asked."""
        self.require(interaction, "export a LoRA")
        await interaction.response.defer(ephemeral=True, thinking=True)
        exported = await export_lora(
            self.app.gpu, self.admins, caller_of(interaction), subject.strip().lower(), version, fmt,
            catalog=self.app.subjects, max_bytes=interaction.filesize_limit,
        )
        text = f"`{exported.filename}`: {fmt} format" + (" (AUTOMATIC1111, ComfyUI)." if fmt == "kohya" else ".")
        await interaction.edit_original_response(
            content=text, attachments=[discord.File(io.BytesIO(exported.data), exported.filename)],
            allowed_mentions=NO_MENTIONS,
        )

    async def status(self, interaction: discord.Interaction) -> None:
        self.require(interaction, "see the status")
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = status_text(await self.app.admin.status(caller_of(interaction)))
        await interaction.edit_original_response(content=render.clip(text), allowed_mentions=NO_MENTIONS)


def banned_change(what: str, done: list[str], asked: int) -> str:
    text = f"{what}: " + ", ".join(f"`{w}`" for w in done) if done else f"{what}: nothing"
    unchanged = asked - len(done)
    return text + (f" ({unchanged} unchanged)" if unchanged else "") + "."
