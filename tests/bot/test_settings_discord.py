"""/settings through the real discord.py client, two servers at once: a server admin's defaults, spoilers and
gallery change what /qwerty and Share do in that server only; members are refused; a bad default is refused.
And in the terminal shell, which is its own server."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

from bot.shell import Shell
from bot.wiring import make_app_services
from gpu_service.schemas import ModelVersion
from tests.bot.test_shell_actions import run
from tests.bot.conftest import ADMINISTRATOR, MEMBER_ID, bot_settings, running_bot
from tests.bot.helpers import DEFERRED, MESSAGE, click, job_of, qwerty

OTHER_GUILD = "9999999999999999999"
ADMIN = 4444444444444444444
CHANNEL, STRING, INTEGER, BOOLEAN = 7, 3, 4, 5


def trained(subject: str) -> ModelVersion:
    return ModelVersion(subject=subject, version=1, instance_phrase="sks dog", class_phrase="dog", base_model="m",
                        created_at=datetime.now(UTC), active=True)


async def settings(stub, options=(), **who) -> str:
    """Run /settings and return what the admin reads (the deferred answer's edit)."""
    interaction = await stub.slash_command("settings", list(options), **who)
    return (await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=10)).content


def option(name: str, kind: int, value) -> dict:
    return {"name": name, "type": kind, "value": value}


async def test_settings_change_what_qwerty_and_share_do_in_that_server_only(stub, gpu, tmp_path):
    gallery = stub.add_text_channel("gallery")
    gpu.versions = [trained(f"rex@{stub.guild_id}")]
    home = {"user_id": ADMIN, "permissions": ADMINISTRATOR}
    async with running_bot(stub, bot_settings(tmp_path / "data", ADMIN_USER_IDS=""), gpu):
        shown = await settings(stub, [
            option("subject", STRING, "rex"), option("steps", INTEGER, 40), option("spoiler", BOOLEAN, True),
            option("gallery_channel", CHANNEL, gallery),
        ], **home)
        assert "default subject: `rex`" in shown and "default steps: 40" in shown
        assert "spoilers: on" in shown and f"gallery: on, in <#{gallery}>" in shown

        here = await qwerty(stub, {"prompt_prefix": "a photo of a"}, user_id=MEMBER_ID)
        assert (gpu.generated[-1].subject, gpu.generated[-1].steps) == (f"rex@{stub.guild_id}", 40)
        assert here.files[0].filename.startswith("SPOILER_")
        there = await qwerty(stub, {"prompt_prefix": "a photo of a"}, user_id=MEMBER_ID, guild_id=OTHER_GUILD)
        assert (gpu.generated[-1].subject, gpu.generated[-1].steps) == ("qwerty", 25)
        assert not there.files[0].filename.startswith("SPOILER_")
        chosen = await qwerty(stub, {"prompt_prefix": "a", "steps": 7}, user_id=MEMBER_ID)
        assert gpu.generated[-1].steps == 7 and chosen.files

        elsewhere = await settings(stub, user_id=ADMIN, permissions=ADMINISTRATOR, guild_id=OTHER_GUILD)
        assert "default subject: `qwerty` (the bot's)" in elsewhere and "default steps: 25 (the bot's)" in elsewhere
        assert "spoilers: off" in elsewhere and "no channel set" in elsewhere

        off = await settings(stub, [option("gallery", BOOLEAN, False)], **home)
        assert "gallery: off" in off and "default steps: 40" in off  # the rest is kept
        refused = await (await click(stub, here.message_id, f"sq:share:{job_of(here)}:0")).wait_ack()
        assert refused.callback_type == MESSAGE and refused.ephemeral and "gallery off" in refused.content
        await settings(stub, [option("gallery", BOOLEAN, True)], **home)
        shared = await click(stub, here.message_id, f"sq:share:{job_of(here)}:0")
        assert (await shared.wait_ack()).callback_type == DEFERRED
        done = await shared.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
        assert "Shared to the gallery" in done.content


async def test_members_are_refused_and_a_subject_the_server_cannot_see_is_not_stored(stub, gpu, tmp_path):
    gpu.versions = [trained(f"fido@{OTHER_GUILD}")]
    async with running_bot(stub, bot_settings(tmp_path / "data", ADMIN_USER_IDS=""), gpu) as bot:
        member = await (await stub.slash_command("settings", {"steps": 40}, user_id=MEMBER_ID)).wait_ack()
        assert member.ephemeral and "Only admins" in member.content
        refusal = await settings(stub, [option("subject", STRING, "fido")], user_id=ADMIN, permissions=ADMINISTRATOR)
        assert "no subject `fido`" in refusal
        assert bot.app.community.defaults_for(str(stub.guild_id)) == {}
        await qwerty(stub, {"prompt_prefix": "a"}, user_id=MEMBER_ID)
        assert (gpu.generated[-1].subject, gpu.generated[-1].steps) == ("qwerty", 25)


async def test_the_shell_sets_its_own_defaults_and_turns_its_gallery_off(gpu, tmp_path):
    settings = bot_settings(tmp_path / "data")
    app = make_app_services(settings, gpu)
    out = io.StringIO()
    shell = Shell(app, settings, out)
    try:
        shown = await run(shell, out, "/settings steps:9 spoiler:on gallery:off")
        assert "default steps: 9" in shown and "spoilers: on" in shown and "gallery: off" in shown
        made = await run(shell, out, '/qwerty prompt_prefix:"a"')
        assert gpu.generated[-1].steps == 9
        job = re.search(r"^job (\w+): /reroll", made, re.MULTILINE)[1]
        assert "gallery off" in await run(shell, out, f"/share job:{job}")
        assert "must be on or off" in await run(shell, out, "/settings gallery:maybe")
        assert "default steps: 9" in await run(shell, out, "/settings")
    finally:
        await app.close()
