"""The Discord side of the one error handler: unwrap discord.py's errors, ask commands.errors what to say,
log what was unexpected with its context, and answer in the right place.

Where the answer goes: not acknowledged yet -> the response itself (ephemeral when the reply says so);
deferred -> the deferred message is edited to the error, so no "thinking…" or stale progress is left;
a button click acknowledged without a message of its own (its message updated) -> an ephemeral follow-up,
so the message the button is on is never overwritten.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.render import clip
from commands.errors import ErrorReply, MemberError, reply_for

log = logging.getLogger(__name__)
NO_MENTIONS = discord.AllowedMentions.none()
ECHO_WIDTH = 100  # the most of what a member typed that an error reply repeats


class OutOfDate(MemberError):
    """Discord sent a command this bot does not know (its commands were not synced since a change)."""


class BadOption(MemberError):
    """discord.py could not turn an option into its type."""


def unwrap(error: BaseException) -> BaseException:
    """The error a member's request really ran into."""
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    if isinstance(error, (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)):
        return OutOfDate("This command changed since it was registered; an admin needs to run "
                         "`python -m bot sync`. Please try again later.")
    if isinstance(error, app_commands.TransformerError):
        return BadOption(f"`{clip(str(error.value), ECHO_WIDTH)}` is not a valid {error.type.name.lower()} here.")
    return error


_UPDATES = (discord.InteractionResponseType.deferred_message_update, discord.InteractionResponseType.message_update)


def describe(interaction: discord.Interaction) -> str:
    if interaction.command is not None:
        what = f"/{interaction.command.qualified_name}"
    else:
        what = f"component {(interaction.data or {}).get('custom_id', '?')}"
    return (f"{what} user={interaction.user.id} guild={interaction.guild_id} "
            f"channel={interaction.channel_id} interaction={interaction.id}")


def log_reply(reply: ErrorReply, error: BaseException, where: str) -> None:
    if reply.unexpected:
        log.error("unexpected error [ref %s] in %s", reply.reference, where, exc_info=error)
    else:
        log.info("refused %s: %s", where, reply.text.splitlines()[0])


async def answer_error(interaction: discord.Interaction, error: BaseException) -> None:
    """The tree's on_error: every command's failures end here."""
    original = unwrap(error)
    reply = reply_for(original)
    log_reply(reply, original, describe(interaction))
    text = clip(reply.text)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=reply.ephemeral, allowed_mentions=NO_MENTIONS)
        elif interaction.response.type in _UPDATES:
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.edit_original_response(content=text, attachments=[], allowed_mentions=NO_MENTIONS)
    except discord.HTTPException:
        log.warning("could not tell the member about an error in %s", describe(interaction), exc_info=True)


async def post_error(channel: discord.abc.Messageable, error: BaseException, where: str) -> None:
    """For work that outlives its interaction (trainings): the answer is a channel message."""
    reply = reply_for(error)
    log_reply(reply, error, where)
    try:
        await channel.send(clip(reply.text), allowed_mentions=NO_MENTIONS)
    except discord.HTTPException:
        log.warning("could not post an error in %s", where, exc_info=True)
