"""The gallery, moderation and admin slash commands as Discord shows them.

Like bot/slash.py: callbacks only hand their options to the bot's desk (`interaction.client.handlers.admin`),
so `python -m bot sync` can register them without any handlers. Admin commands carry
`default_permissions(administrator=True)` as a hint for Discord's UI; the check is at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from commands.community.settings import SettingsChange

if TYPE_CHECKING:
    from bot.admin import AdminDesk

ADMINS_ONLY = app_commands.default_permissions(administrator=True)


def desk_of(interaction: discord.Interaction) -> AdminDesk:
    return interaction.client.handlers.admin  # type: ignore[attr-defined]  # set by QwertyBot


@app_commands.command(name="gallery", description="Admins: choose the channel where shared pictures are posted")
@app_commands.describe(channel="The gallery channel")
@app_commands.guild_only()
@ADMINS_ONLY
async def gallery(interaction: discord.Interaction, channel: discord.TextChannel) -> None:
    await desk_of(interaction).gallery(interaction, channel)


@app_commands.command(name="top", description="The most starred pictures in the gallery")
@app_commands.describe(period="Shared today, this week, or ever (default: this week)")
@app_commands.guild_only()
async def top(interaction: discord.Interaction, period: Literal["day", "week", "all"] = "week") -> None:
    await desk_of(interaction).top(interaction, period)


@app_commands.command(name="banned", description="Admins: words that prompts on this server may not use")
@app_commands.describe(action="Add words, remove words, or list them", words="Words or short phrases, separated by commas")
@app_commands.guild_only()
@ADMINS_ONLY
async def banned(
    interaction: discord.Interaction, action: Literal["add", "remove", "list"],
    words: app_commands.Range[str, 0, 1000] = "",
) -> None:
    await desk_of(interaction).banned(interaction, action, words)


@app_commands.command(name="spoiler", description="Admins: post this server's pictures as spoilers (blurred)")
@app_commands.describe(on="True: blur new pictures and gallery posts until clicked")
@app_commands.guild_only()
@ADMINS_ONLY
async def spoiler(interaction: discord.Interaction, on: bool) -> None:
    await desk_of(interaction).spoiler(interaction, on)


@app_commands.command(name="settings", description="Admins: this server's /qwerty defaults, spoilers and gallery")
@app_commands.describe(
    subject="Default subject for /qwerty on this server", steps="Default steps for /qwerty (1-100)",
    spoiler="True: blur new pictures and gallery posts until clicked", gallery_channel="The gallery channel",
    gallery="False: turn the gallery off (Share is refused); True: on again",
)
@app_commands.guild_only()
@ADMINS_ONLY
async def settings(
    interaction: discord.Interaction, subject: app_commands.Range[str, 1, 32] | None = None,
    steps: app_commands.Range[int, 1, 100] | None = None, spoiler: bool | None = None,
    gallery_channel: discord.TextChannel | None = None, gallery: bool | None = None,
) -> None:
    """With no options: show the settings."""
    channel_id = None if gallery_channel is None else str(gallery_channel.id)
    change = SettingsChange(subject, steps, spoiler, channel_id, gallery)
    await desk_of(interaction).settings(interaction, change)


@app_commands.command(name="models", description="Admins: trained subjects and versions, which is live, W&B links")
@ADMINS_ONLY
async def models(interaction: discord.Interaction) -> None:
    await desk_of(interaction).models(interaction)


@app_commands.command(name="rollback", description="Admins: make an earlier version of a subject live now")
@app_commands.describe(subject="The subject to roll back",
                       version="The version to make live (default: the one before the live one)")
@ADMINS_ONLY
async def rollback(
    interaction: discord.Interaction, subject: app_commands.Range[str, 1, 32],
    version: app_commands.Range[int, 1, 100_000] | None = None,
) -> None:
    await desk_of(interaction).rollback(interaction, subject, version)


@app_commands.command(name="export", description="Admins: download a version's LoRA file")
@app_commands.describe(subject="The subject", version="The version to export",
                       fmt="diffusers (as stored) or kohya (AUTOMATIC1111, ComfyUI); default diffusers")
@app_commands.rename(fmt="format")
@ADMINS_ONLY
async def export(
    interaction: discord.Interaction, subject: app_commands.Range[str, 1, 32],
    version: app_commands.Range[int, 1, 100_000], fmt: Literal["diffusers", "kohya"] = "diffusers",
) -> None:
    await desk_of(interaction).export(interaction, subject, version, fmt)


@app_commands.command(name="status", description="Admins: GPU backend, queue length, running trainings")
@ADMINS_ONLY
async def status(interaction: discord.Interaction) -> None:
    await desk_of(interaction).status(interaction)


@settings.autocomplete("subject")
@rollback.autocomplete("subject")
@export.autocomplete("subject")
async def subject_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return await interaction.client.handlers.subject_choices(interaction, current)  # type: ignore[attr-defined]


COMMUNITY_COMMANDS = (gallery, top, banned, spoiler, settings, models, rollback, export, status)
