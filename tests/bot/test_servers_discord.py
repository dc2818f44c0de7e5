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
    other_admin = {**admin, "guild_id": OTHER_GUILD}
    async with running_bot(stub, settings, gpu) as bot:
        qwerty = await stub.slash_command("train", photos(3), **admin)  # the default subject's name
        started = await qwerty.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
        assert "this server's own: other servers keep theirs" in started.content and (await qwerty.wait_ack()).ephemeral
        await stub.messages.wait_for(lambda s: "finished" in (s.content or ""), timeout=10)
        rex = {**photos(3), "subject": "rex", "instance_phrase": "sks dog", "class_phrase": "dog"}
        await (await stub.slash_command("train", rex, **admin)).wait_ack()
        await stub.messages.wait_for(lambda s: "`rex` v1 is live" in (s.content or ""), timeout=10)
        assert [r.subject for r in gpu.trained] == [f"qwerty@{stub.guild_id}", f"rex@{stub.guild_id}"]

        # Another server: its qwerty is still the global one (untrained), and our rex does not exist there.
        for subject in ("qwerty", "rex"):
            there = await stub.slash_command("qwerty", {"prompt_prefix": "a", "subject": subject},
                                             user_id=MEMBER_ID, guild_id=OTHER_GUILD)
            answer = await there.responses.wait_for(lambda s: s.files, timeout=10)
            assert "has no trained version yet" in answer.content
        assert [request.subject for request in gpu.generated] == ["qwerty", "rex"]
        rollback = await stub.slash_command("rollback", {"subject": "rex", "version": 1}, **other_admin)
        refusal = await rollback.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
        assert "no trained subject `rex`" in refusal.content
        sneaky = await stub.slash_command("qwerty", {"prompt_prefix": "a", "subject": f"rex@{stub.guild_id}"},
                                          user_id=MEMBER_ID, guild_id=OTHER_GUILD)
        assert "may use a-z" in (await sneaky.wait_ack()).content and len(gpu.generated) == 2

        for guild, expected in ((OTHER_GUILD, []), (stub.guild_id, ["rex"])):
            typing = await stub.autocomplete("qwerty", {"prompt_prefix": "a", "subject": "re"}, focused="subject",
                                             user_id=MEMBER_ID, guild_id=guild)
            assert [c["value"] for c in (await typing.wait_ack()).payload["data"]["choices"]] == expected
        home = await stub.slash_command("qwerty", {"prompt_prefix": "a", "subject": "rex"}, user_id=MEMBER_ID)
        answer = await home.responses.wait_for(lambda s: s.files, timeout=10)
        assert "rex v1" in answer.content and gpu.generated[-1].subject == f"rex@{stub.guild_id}"
        assert len(await bot.app.jobs.all()) == 5  # two trainings, three generations; the refusals left none
