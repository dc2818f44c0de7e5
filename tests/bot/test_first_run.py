"""At start the bot logs its invite link and warns, with the fix, when no command is registered."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import discord

from bot.app import NOT_REGISTERED, invite_url, sync_commands
from tests.bot.conftest import bot_settings, eventually, running_bot
from tests.support.discord_stub import discord_py_pointed_at
from tests.support.sleepy_gpu import SleepyGpu


def test_the_invite_asks_for_exactly_the_permissions_the_bot_uses():
    query = parse_qs(urlsplit(invite_url(42)).query)
    wanted = discord.Permissions(send_messages=True, attach_files=True, embed_links=True, read_message_history=True)
    assert query["client_id"] == ["42"] and query["permissions"] == [str(wanted.value)]
    assert query["scope"] == ["bot applications.commands"]


async def _guidance(stub, settings, caplog) -> list[str]:
    caplog.set_level(logging.INFO, logger="bot.app")
    async with running_bot(stub, settings, SleepyGpu()):
        async def checked():
            logged = [r.getMessage() for r in caplog.records if r.name == "bot.app"]
            return any(line == NOT_REGISTERED or "registered with Discord" in line for line in logged)

        await eventually(checked)
    return [r.getMessage() for r in caplog.records if r.name == "bot.app"]


async def test_with_no_commands_registered_the_bot_says_to_run_make_sync(stub, tmp_path, caplog):
    logged = await _guidance(stub, bot_settings(tmp_path / "data"), caplog)
    assert any(f"client_id={stub.app_id}" in line for line in logged)
    assert NOT_REGISTERED in logged and "make sync" in NOT_REGISTERED


async def test_after_a_sync_there_is_no_warning(stub, tmp_path, caplog):
    settings = bot_settings(tmp_path / "data")
    with discord_py_pointed_at(stub):
        await sync_commands(settings)
    logged = await _guidance(stub, settings, caplog)
    assert NOT_REGISTERED not in logged and any("command(s) registered with Discord" in line for line in logged)
