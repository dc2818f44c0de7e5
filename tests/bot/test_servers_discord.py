"""A public bot in several servers: a server's admins act on their own subjects only, other servers do not
see them, and a private bot answers nothing outside its servers. Real discord.py against the loopback stand-in,
two servers in one test."""

from __future__ import annotations

import asyncio

from bot.context import PRIVATE
from tests.bot.conftest import ADMINISTRATOR, MEMBER_ID, bot_settings, running_bot
from tests.bot.test_train_discord import photos

OTHER_GUILD = "9999999999999999999"
EPHEMERAL = 64


async def test_a_private_bot_answers_one_ephemeral_line_elsewhere_and_runs_nothing(stub, gpu, tmp_path):
    settings = bot_settings(tmp_path / "data", ALLOWED_GUILD_IDS=OTHER_GUILD)
    async with running_bot(stub, settings, gpu) as bot:
        interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a photo of a"}, user_id=MEMBER_ID)
        ack = await interaction.wait_ack()
        assert ack.content == PRIVATE and ack.ephemeral
        served = await stub.slash_command("qwerty", {"prompt_prefix": "a photo of a"}, user_id=MEMBER_ID,
                                          guild_id=OTHER_GUILD)
        await served.responses.wait_for(lambda s: s.files, timeout=10)
        await asyncio.sleep(0.1)
        assert len(gpu.generated) == 1 and len(await bot.app.jobs.all()) == 1


async def test_a_server_admin_trains_only_its_own_subjects_and_other_servers_never_see_them(stub, gpu, tmp_path):
    settings = bot_settings(tmp_path / "data", ADMIN_USER_IDS="")  # no operators: server admins only
    admin = {"user_id": MEMBER_ID, "permissions": ADMINISTRATOR}
    async with running_bot(stub, settings, gpu) as bot:
        refused = await stub.slash_command("train", photos(3), **admin)  # the global default subject
        answer = await refused.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
        assert "global subject" in answer.content and "operators" in answer.content
        assert (await refused.wait_ack()).ephemeral and gpu.trained == [] and await bot.app.jobs.all() == []

        own = {**photos(3), "subject": "rex", "instance_phrase": "sks dog", "class_phrase": "dog"}
        await (await stub.slash_command("train", own, **admin)).wait_ack()
        await stub.messages.wait_for(lambda s: "finished" in (s.content or ""), timeout=10)
        assert [request.owner for request in gpu.trained] == [stub.guild_id]

        elsewhere = await stub.slash_command("qwerty", {"prompt_prefix": "a", "subject": "rex"},
                                             user_id=MEMBER_ID, guild_id=OTHER_GUILD)
        gone = await elsewhere.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
        assert "no subject `rex` on this server" in gone.content and len(gpu.generated) == 0

        other_admin = {"user_id": MEMBER_ID, "permissions": ADMINISTRATOR, "guild_id": OTHER_GUILD}
        takeover = await stub.slash_command("train", {**own, "steps": 3}, **other_admin)
        taken = await takeover.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
        assert "another server's subject" in taken.content and len(gpu.trained) == 1
        rollback = await stub.slash_command("rollback", {"subject": "rex", "version": 1}, **other_admin)
        refusal = await rollback.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
        assert "no trained subject `rex`" in refusal.content

        for guild, expected in ((OTHER_GUILD, []), (stub.guild_id, ["rex"])):
            typing = await stub.autocomplete("qwerty", {"prompt_prefix": "a", "subject": "re"}, focused="subject",
                                             user_id=MEMBER_ID, guild_id=guild)
            assert [c["value"] for c in (await typing.wait_ack()).payload["data"]["choices"]] == expected
        home = await stub.slash_command("qwerty", {"prompt_prefix": "a", "subject": "rex"}, user_id=MEMBER_ID)
        await home.responses.wait_for(lambda s: s.files, timeout=10)
        assert len(gpu.generated) == 1
