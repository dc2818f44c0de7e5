"""Whatever a member types, what the bot sends stays within Discord's limits and repeats little of it."""

from __future__ import annotations

import json
import re

from gpu_service.errors import TrainingFailed
from tests.bot.conftest import ADMIN_ID
from tests.bot.test_train_discord import photos

MESSAGE = 4
SECRET_WORDS = ("hunter2", "s3cr3t", "/srv/private", "KeyError")


def everything_sent(stub) -> str:
    return "\n".join(json.dumps(sent.payload) for sent in stub.messages) + "\n".join(
        json.dumps(sent.payload) for interaction in stub.interactions for sent in interaction.responses
    )


async def test_a_3000_character_postfix_is_refused_in_one_short_sentence(bot, stub, gpu):
    postfix = "in a psychedelic style " + "x" * 2977
    interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a", "prompt_postfix": postfix})
    ack = await interaction.wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral
    assert "Your `prompt_postfix` is 3,000 characters; the limit is 1,000." in ack.content
    assert len(ack.content) < 200 and "psychedelic" not in ack.content and "x" * 20 not in ack.content
    assert gpu.generated == []


async def test_a_failure_quoting_exception_text_paths_and_links_reaches_the_member_as_a_reference(bot, stub, gpu):
    gpu.fail_with = TrainingFailed(
        "Training j failed (KeyError: 'hunter2' in /srv/private/x.py). It can be run again. "
        "See https://bob:hunter2@files.example.com/log?token=s3cr3t."
    )
    interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a"})
    error = await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    assert "Training j failed. It can be run again." in error.content and "reference" in error.content.lower()
    assert "https://files.example.com/log." in error.content
    sent = everything_sent(stub)
    assert "It can be run again" in sent and not [word for word in SECRET_WORDS if word in sent]


async def test_twenty_long_refused_links_make_a_train_reply_within_the_limit_without_their_secrets(bot, stub):
    links = " ".join(f"http://bob:hunter2@10.0.0.{n}/{'p' * 150}.png?token=s3cr3t" for n in range(17))
    interaction = await stub.slash_command("train", {**photos(3), "urls": links}, user_id=ADMIN_ID)
    started = await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    assert "Skipped 17 image(s):" in started.content and "http://10.0.0.0/ppp" in started.content
    assert len(started.content) <= 2000
    sent = everything_sent(stub)
    assert re.search(r"and \d+ more", sent) and not [word for word in SECRET_WORDS if word in sent]
