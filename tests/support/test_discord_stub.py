"""The Discord stub against the real, unmodified discord.py client: login, commands, files, buttons, load."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import discord
import pytest
from discord import app_commands
from PIL import Image

from tests.support.discord_stub import DiscordStub, discord_py_pointed_at

TOKEN = "stub-bot-token"


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


PONG_PNG = _png((200, 30, 10))
USER_PNG = _png((10, 30, 200))


class MenuView(discord.ui.View):
    @discord.ui.button(label="Go", custom_id="go")
    async def go(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="clicked", view=None)  # callback type 7

    @discord.ui.button(label="Later", custom_id="later")
    async def later(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.defer()  # callback type 6
        await interaction.edit_original_response(content="later")


def make_bot(guild_id: str) -> tuple[discord.Client, app_commands.CommandTree]:
    # A tiny guild_ready_timeout: on_ready waits that long after the last GUILD_CREATE.
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    tree = app_commands.CommandTree(client)
    guild = discord.Object(int(guild_id))

    @tree.command(guild=guild, description="Deferred reply with a file")
    async def ping(interaction: discord.Interaction, count: int) -> None:
        await interaction.response.defer(thinking=True)
        image = discord.File(io.BytesIO(PONG_PNG), "x.png")
        await interaction.followup.send(content=f"pong {count}", file=image)

    @tree.command(guild=guild, description="Ephemeral reply")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("shh", ephemeral=True)

    @tree.command(guild=guild, description="Who am I")
    async def whoami(interaction: discord.Interaction) -> None:
        roles = ",".join(r.name for r in interaction.user.roles)  # @everyone first
        await interaction.response.send_message(f"{roles} {interaction.permissions.administrator}")

    @tree.command(guild=guild, description="Buttons")
    async def menu(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pick", view=MenuView())

    @tree.command(guild=guild, description="Downloads the attachment and sends it back")
    async def echo(interaction: discord.Interaction, image: discord.Attachment) -> None:
        data = await image.read()
        reply = f"{image.filename} {len(data)} {image.width}x{image.height}"
        await interaction.response.send_message(reply, file=discord.File(io.BytesIO(data), "echo.png"))

    @tree.command(guild=guild, description="Edits its deferred reply twice, the second time with a file")
    async def progress(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="working")
        image = discord.File(io.BytesIO(PONG_PNG), "r.png")
        await interaction.edit_original_response(content="done", attachments=[image])

    @tree.command(guild=guild, description="Autocompletes")
    async def style(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(name)

    @style.autocomplete("name")
    async def style_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in ("anime", "oil") if n.startswith(current)]

    return client, tree


@pytest.fixture
async def connected():
    """A started stub, and a real discord.py client logged in to it with its commands synced to the guild."""
    async with DiscordStub(token=TOKEN, roles={"trainer": 0}) as stub:
        client, tree = make_bot(stub.guild_id)
        with discord_py_pointed_at(stub):
            await client.login(TOKEN)
            running = asyncio.create_task(client.connect())
            try:
                await stub.wait_connected(timeout=5)
                await tree.sync(guild=discord.Object(int(stub.guild_id)))
                yield stub, client
            finally:
                await client.close()
                await running


async def test_login_connect_and_ready(connected):
    """Login calls the identity routes; the guild, its channel and on_ready all arrive."""
    stub, client = connected
    paths = [(r.method, r.path) for r in stub.requests]
    assert ("GET", "/users/@me") in paths and ("GET", "/oauth2/applications/@me") in paths
    await asyncio.wait_for(client.wait_until_ready(), 1)
    assert client.user.id == int(stub.app_id)
    guild = client.get_guild(int(stub.guild_id))
    assert isinstance(guild.get_channel(int(stub.channel_id)), discord.TextChannel)
    assert guild.default_role.id == guild.id
    assert stub.gateway_frames[0]["op"] in (1, 2)  # a heartbeat or IDENTIFY first


async def test_guild_sync_is_recorded_and_no_global_sync(connected):
    """tree.sync(guild=...) is one PUT of the guild's commands; nothing global."""
    stub, _ = connected
    (sync,) = stub.command_syncs
    assert sync.guild_id == stub.guild_id
    assert {c["name"] for c in sync.commands} == {"ping", "secret", "whoami", "menu", "echo", "progress", "style"}
    assert all(c["id"] and c["guild_id"] == stub.guild_id for c in stub.commands(stub.guild_id))
    global_sync = ("PUT", f"/applications/{stub.app_id}/commands")
    assert global_sync not in [(r.method, r.path) for r in stub.requests]


async def test_deferred_ack_then_followup_with_file(connected):
    """defer(thinking=True) is a type 5 ack; the follow-up's multipart file decodes to the same bytes."""
    stub, _ = connected
    interaction = await stub.slash_command("ping", {"count": 3})
    ack = await interaction.wait_ack()
    assert ack.callback_type == 5 and ack.at >= interaction.sent_at
    result = await interaction.wait_response()
    assert (result.kind, result.content) == ("followup", "pong 3")
    (file,) = result.files
    assert (file.filename, file.data, file.content_type) == ("x.png", PONG_PNG, "image/png")
    async with aiohttp.ClientSession() as session:
        async with session.get(result.message["attachments"][0]["url"]) as served:
            assert await served.read() == PONG_PNG


async def test_ephemeral_reply_has_flag_64_and_a_second_ack_fails(connected):
    stub, _ = connected
    interaction = await stub.slash_command("secret")
    ack = await interaction.wait_ack()
    assert (ack.callback_type, ack.content, ack.ephemeral) == (4, "shh", True)
    assert ack.message["flags"] & 64
    url = f"{stub.api_base}/interactions/{interaction.id}/{interaction.token}/callback"
    async with aiohttp.ClientSession() as session, session.post(url, json={"type": 5}) as again:
        assert (again.status, (await again.json())["code"]) == (400, 40060)


async def test_roles_and_permissions_reach_the_bot(connected):
    stub, _ = connected
    plain = await (await stub.slash_command("whoami")).wait_response()
    admin = await (await stub.slash_command("whoami", roles=["trainer"], permissions=8)).wait_response()
    assert (plain.content, admin.content) == ("@everyone False", "@everyone,trainer True")


async def test_button_clicks_update_or_defer(connected):
    """A click answered with edit_message is a type 7; one answered with defer() is a 6 then an edit."""
    stub, _ = connected
    menu = await (await stub.slash_command("menu")).wait_ack()
    assert menu.message["components"]
    clicked = await stub.click(menu.message_id, "go")
    update = await clicked.wait_ack()
    assert (update.callback_type, update.content) == (7, "clicked")
    assert stub.message(menu.message_id)["components"] == []

    later_menu = await (await stub.slash_command("menu")).wait_ack()
    later = await stub.click(later_menu.message_id, "later")
    assert (await later.wait_ack()).callback_type == 6
    edit = await later.wait_response()
    assert (edit.kind, edit.message_id, edit.content) == ("edit", later_menu.message_id, "later")
    with pytest.raises(ValueError, match="no component"):
        await stub.click(later_menu.message_id, "nope")


async def test_attachment_option_is_downloadable(connected):
    """An attachment option resolves to a URL on the stub that serves the user's bytes."""
    stub, _ = connected
    interaction = await stub.slash_command("echo", {"image": USER_PNG})
    reply = await interaction.wait_response()
    assert reply.content == f"image.png {len(USER_PNG)} 8x4"
    assert reply.files[0].data == USER_PNG


async def test_edits_of_the_original_response_carry_files(connected):
    """The first edit with content is the response; a later multipart edit replaces it with a file."""
    stub, _ = connected
    interaction = await stub.slash_command("progress")
    first = await interaction.wait_response()
    assert (first.kind, first.content, first.files) == ("edit", "working", ())
    last = await interaction.responses.wait_for(lambda s: s.content == "done")
    assert last.files[0].data == PONG_PNG
    original = stub.message(interaction.original_message_id)
    assert original["content"] == "done" and not original["flags"] & 128  # no longer "thinking"
    assert [a["filename"] for a in original["attachments"]] == ["r.png"]


async def test_autocomplete_gets_choices(connected):
    stub, _ = connected
    interaction = await stub.autocomplete("style", {"name": "an"}, focused="name")
    ack = await interaction.wait_ack()
    assert ack.callback_type == 8
    assert ack.payload["data"]["choices"] == [{"name": "anime", "value": "anime"}]


async def test_fifty_simultaneous_commands_are_all_acknowledged(connected):
    stub, _ = connected
    interactions = await asyncio.gather(*(stub.slash_command("ping", {"count": i}) for i in range(50)))
    acks = await asyncio.gather(*(i.wait_ack(timeout=10) for i in interactions))
    assert all(ack.callback_type == 5 for ack in acks)
    assert len({i.id for i in interactions}) == 50
    responses = await asyncio.gather(*(i.wait_response(timeout=10) for i in interactions))
    assert sorted(r.content for r in responses) == sorted(f"pong {i}" for i in range(50))


async def test_reconnect_resumes_the_session(connected):
    stub, _ = connected
    await stub.drop_connection()
    await stub.gateway_frames.wait_for(lambda f: f.get("op") == 6, timeout=5)  # RESUME
    await stub.wait_connected(timeout=5)
    assert (await (await stub.slash_command("secret")).wait_ack()).content == "shh"


async def test_unknown_route_is_a_json_404_and_content_type_is_exact():
    """Unknown routes are logged and answered like Discord; JSON is exactly application/json."""
    async with DiscordStub() as stub, aiohttp.ClientSession() as session:
        async with session.get(f"{stub.api_base}/users/@me") as me:
            assert me.headers["Content-Type"] == "application/json"
        async with session.get(f"{stub.api_base}/no/such/route") as missing:
            assert (missing.status, (await missing.json())["code"]) == (404, 0)
        assert (stub.requests[-1].path, stub.requests[-1].status) == ("/no/such/route", 404)


async def test_wrong_token_fails_login():
    async with DiscordStub(token=TOKEN) as stub:
        client, _ = make_bot(stub.guild_id)
        with discord_py_pointed_at(stub), pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
        await client.close()


async def test_sharded_client_finds_the_gateway_from_the_rest_base_alone(monkeypatch):
    """AutoShardedClient asks GET /gateway/bot; a plain Client would need DEFAULT_GATEWAY set too."""
    async with DiscordStub() as stub:
        monkeypatch.setattr(discord.http.Route, "BASE", stub.api_base)
        client = discord.AutoShardedClient(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        await client.login(TOKEN)
        running = asyncio.create_task(client.connect())
        try:
            await stub.wait_connected(timeout=5)
            await asyncio.wait_for(client.wait_until_ready(), 2)
            assert ("GET", "/gateway/bot") in [(r.method, r.path) for r in stub.requests]
            assert client.get_guild(int(stub.guild_id)) is not None
        finally:
            await client.close()
            await running
