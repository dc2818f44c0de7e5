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
    return Caller(interaction.user.id, role_ids, interaction.permissions.administrator)
