"""The commands as Discord receives them: valid names, whole descriptions, few enough options; synced
only when asked."""

from __future__ import annotations

import re

import discord
import pytest
from discord import app_commands

from bot.app import intents, sync_commands
from bot.slash import add_commands
from tests.bot.conftest import bot_settings, running_bot
from tests.support.discord_stub import discord_py_pointed_at
from tests.support.sleepy_gpu import SleepyGpu

NAME = re.compile(r"^[-_a-z0-9]{1,32}$")  # Discord's rule, lower case only for slash commands
ALL = {"qwerty", "train", "gallery", "top", "banned", "spoiler", "settings", "models", "rollback", "export",
       "status", "help"}
MENUS = {"Vary this image"}  # message context menus: any case and spaces, no description
MESSAGE_MENU = 3
ADMIN_ONLY = {"train", "gallery", "banned", "spoiler", "settings", "models", "rollback", "export", "status"}


def every_payload() -> list[dict]:
    tree = app_commands.CommandTree(discord.Client(intents=intents()))
    add_commands(tree)
    return [command.to_dict(tree) for command in tree.get_commands()]


def payloads() -> list[dict]:
    """The slash commands."""
    return [payload for payload in every_payload() if payload["type"] == 1]


def described(payload: dict):
    yield payload
    for option in payload.get("options", []):
        yield from described(option)


@pytest.mark.parametrize("payload", payloads(), ids=lambda p: p["name"])
def test_names_descriptions_and_option_counts_fit_discords_limits(payload):
    assert len(payload.get("options", [])) <= 25
    for item in described(payload):
        assert NAME.fullmatch(item["name"]), item["name"]
        description = item["description"]
        assert 1 <= len(description) <= 100, description
        assert not description.endswith(("…", "...")), f"cut: {description!r}"
    names = [option["name"] for option in payload.get("options", [])]
    assert len(names) == len(set(names))
    required = [option.get("required", False) for option in payload.get("options", [])]
    assert required == sorted(required, reverse=True)  # Discord wants required options first


def test_the_message_menu_fits_discords_limits_and_works_in_servers_only():
    [menu] = [payload for payload in every_payload() if payload["type"] != 1]
    assert menu["type"] == MESSAGE_MENU and {menu["name"]} == MENUS and 1 <= len(menu["name"]) <= 32
    assert menu["contexts"] == [0] and menu.get("default_member_permissions") is None


def test_the_issues_options_are_offered():
    by_name = {p["name"]: p for p in payloads()}
    qwerty = {o["name"]: o for o in by_name["qwerty"]["options"]}
    assert list(qwerty) == ["prompt_prefix", "prompt_postfix", "seed", "count", "negative_prompt", "steps",
                            "guidance", "subject", "aspect"]
    assert [c["value"] for c in qwerty["aspect"]["choices"]] == ["square", "portrait", "landscape", "wide"]
    assert not qwerty["aspect"]["required"] and by_name["help"].get("options", []) == []
    assert qwerty["prompt_prefix"]["required"] and (qwerty["count"]["min_value"], qwerty["count"]["max_value"]) == (1, 4)
    assert qwerty["subject"]["autocomplete"]
    train = {o["name"]: o for o in by_name["train"]["options"]}
    assert list(train) == ["urls", *(f"image{n}" for n in range(1, 9)), "subject", "instance_phrase",
                           "class_phrase", "steps"]
    assert all(train[f"image{n}"]["type"] == 11 for n in range(1, 9))  # attachments
    assert int(by_name["train"]["default_member_permissions"]) == discord.Permissions(administrator=True).value


def test_the_gallery_and_admin_commands_are_offered():
    by_name = {p["name"]: p for p in payloads()}
    assert set(by_name) == ALL
    for name in ADMIN_ONLY:  # a hint for Discord's UI; each is also checked at run time
        assert int(by_name[name]["default_member_permissions"]) == discord.Permissions(administrator=True).value
    assert by_name["top"].get("default_member_permissions") is None
    options = {name: {o["name"]: o for o in p.get("options", [])} for name, p in by_name.items()}
    assert options["gallery"]["channel"]["type"] == 7 and options["gallery"]["channel"]["required"]
    assert [c["value"] for c in options["top"]["period"]["choices"]] == ["day", "week", "all"]
    assert [c["value"] for c in options["banned"]["action"]["choices"]] == ["add", "remove", "list"]
    assert options["spoiler"]["on"]["type"] == 5
    assert list(options["rollback"]) == ["subject", "version"] and options["rollback"]["subject"]["autocomplete"]
    assert options["models"] == {} and options["status"] == {}
    export = options["export"]
    assert list(export) == ["subject", "version", "format"] and export["subject"]["autocomplete"]
    assert [c["value"] for c in export["format"]["choices"]] == ["diffusers", "kohya"]
    assert export["version"]["required"] and not export["format"].get("required")


async def test_starting_the_bot_syncs_nothing_without_a_dev_guild(stub, tmp_path):
    async with running_bot(stub, bot_settings(tmp_path / "data"), SleepyGpu()):
        answer = await (await stub.slash_command("qwerty", {"prompt_prefix": "a"})).wait_ack()
        assert answer.callback_type == 5
    assert list(stub.command_syncs) == []


async def test_with_a_dev_guild_the_bot_syncs_there_only_and_its_commands_work(stub, tmp_path):
    settings = bot_settings(tmp_path / "data", DISCORD_GUILD_ID=stub.guild_id)
    async with running_bot(stub, settings, SleepyGpu()):
        [sync] = stub.command_syncs
        assert sync.guild_id == stub.guild_id and {c["name"] for c in sync.commands} == ALL | MENUS
        interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a"})
        assert "guild_id" in interaction.payload["data"]
        await interaction.responses.wait_for(lambda s: s.kind == "followup", timeout=10)


@pytest.mark.parametrize("guild", [False, True])
async def test_python_m_bot_sync_overwrites_the_commands_once(stub, tmp_path, guild):
    settings = bot_settings(tmp_path / "data", DISCORD_GUILD_ID=stub.guild_id if guild else None)
    with discord_py_pointed_at(stub):
        names = await sync_commands(settings)
    assert sorted(names) == sorted(ALL | MENUS)
    [sync] = stub.command_syncs
    assert sync.guild_id == (stub.guild_id if guild else None)
    assert not any(r.path.startswith("/gateway") for r in stub.requests)  # REST only
