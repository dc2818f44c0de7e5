"""What an interaction says about who asked and where: the commands/ layer's view of a Discord user."""

from __future__ import annotations

import discord

from commands.context import RequestContext
from commands.permissions import Caller


def request_context(interaction: discord.Interaction) -> RequestContext:
    return RequestContext(
        front_end="discord", user_id=str(interaction.user.id), user_name=interaction.user.name,
        guild_id=str(interaction.guild_id or ""), channel_id=str(interaction.channel_id or ""),
        interaction_id=str(interaction.id),
    )


def caller_of(interaction: discord.Interaction) -> Caller:
    # Role ids straight from the interaction's member payload: Member.roles would drop any role
    # missing from the guild cache.
    role_ids = frozenset(int(role_id) for role_id in getattr(interaction.user, "_roles", ()))
    guild_id = str(interaction.guild_id or "")
    return Caller(interaction.user.id, role_ids, interaction.permissions.administrator and bool(guild_id), guild_id)


PRIVATE = "This bot is private: it serves only the servers its operators chose, so it does nothing here."


def served(guild_id: int | None, allowed: frozenset[int]) -> bool:
    """ALLOWED_GUILD_IDS: empty serves every server; otherwise only those listed (and no direct messages)."""
    return not allowed or guild_id in allowed


async def turn_away(interaction: discord.Interaction) -> None:
    """One ephemeral line for a server the bot does not serve; nothing runs."""
    if interaction.type is discord.InteractionType.autocomplete:
        await interaction.response.autocomplete([])
    else:
        await interaction.response.send_message(PRIVATE, ephemeral=True)


async def check_served(interaction: discord.Interaction, allowed: frozenset[int]) -> bool:
    if served(interaction.guild_id, allowed):
        return True
    await turn_away(interaction)
    return False
