"""The buttons on a generation through the real discord.py client: Reroll, Variations, Share, Delete,
and a click after the bot restarted."""

from __future__ import annotations

import asyncio

from tests.bot.conftest import ADMIN_ID, MEMBER_ID, bot_settings, eventually, running_bot
from tests.bot.helpers import (
    DEFERRED, MANAGE_MESSAGES, MESSAGE, SELECT, click, custom_ids, is_answer, job_of, qwerty, seeds_of,
)
from tests.support.sleepy_gpu import SleepyGpu


async def test_every_generation_carries_its_buttons_with_the_job_id(bot, stub):
    one = await qwerty(stub, {"prompt_prefix": "a", "seed": 3})
    job = job_of(one)
    assert custom_ids(one.message["components"]) == [f"sq:reroll:{job}", f"sq:edit:{job}", f"sq:var:{job}:0",
                                                      f"sq:share:{job}:0", f"sq:del:{job}"]
    two = await qwerty(stub, {"prompt_prefix": "a", "count": 2})
    job = job_of(two)  # with several images, Variations and Share ask which
    assert custom_ids(two.message["components"]) == [f"sq:reroll:{job}", f"sq:edit:{job}", f"sq:var:{job}",
                                                      f"sq:share:{job}", f"sq:del:{job}"]


async def test_reroll_gives_the_same_prompt_with_new_seeds_for_whoever_clicks(bot, stub, gpu):
    first = await qwerty(stub, {"prompt_prefix": "a painting of a", "prompt_postfix": "in space", "seed": 7,
                                "count": 2, "steps": 5}, user_id=MEMBER_ID)
    rerolled = await click(stub, first.message_id, f"sq:reroll:{job_of(first)}", user_id=ADMIN_ID)
    assert (await rerolled.wait_ack()).callback_type == DEFERRED
    answer = await rerolled.responses.wait_for(is_answer, timeout=10)
    assert "a painting of a qwerty dog in space" in answer.content
    assert seeds_of(first.content) == [7, 8] and set(seeds_of(answer.content)).isdisjoint({7, 8})
    again = gpu.generated[-1]
    assert (again.prompt_prefix, again.prompt_postfix, again.count, again.steps, again.seed) == (
        "a painting of a", "in space", 2, 5, None)
    record = await bot.app.jobs.get(job_of(answer))
    assert record.user_id == str(ADMIN_ID) and record.state == "done"
    assert len(answer.files) == 2 and job_of(answer) != job_of(first)


async def test_variations_start_from_the_picked_image_with_the_same_subject(bot, stub, gpu):
    first = await qwerty(stub, {"prompt_prefix": "a", "seed": 20, "count": 2, "subject": "qwerty"})
    job = job_of(first)
    asked = await click(stub, first.message_id, f"sq:var:{job}")
    menu = await asked.wait_ack()
    assert menu.callback_type == MESSAGE and menu.ephemeral
    [select] = [c for row in menu.data["components"] for c in row["components"]]
    assert select["custom_id"] == f"sq:var:{job}" and [o["value"] for o in select["options"]] == ["0", "1"]
    picked = await click(stub, menu.message_id, f"sq:var:{job}", component_type=SELECT, values=["1"])
    answer = await picked.responses.wait_for(is_answer, timeout=10)
    varied = gpu.generated[-1]
    assert varied.init_image == first.files[1].data and varied.subject == "qwerty" and varied.seed is None
    assert varied.strength == 0.6 and len(answer.files) == 2
    record = await bot.app.jobs.get(job_of(answer))
    assert record.request["source_row_id"] == f"{job}-1"


async def test_delete_by_the_requester_removes_the_message(bot, stub):
    answer = await qwerty(stub, {"prompt_prefix": "a"}, user_id=MEMBER_ID)
    clicked = await click(stub, answer.message_id, f"sq:del:{job_of(answer)}", user_id=MEMBER_ID)
    assert (await clicked.wait_ack()).callback_type == 6  # acknowledged without a message
    deleted = await stub.messages.wait_for(lambda s: s.kind == "delete", timeout=5)
    assert deleted.message_id == answer.message_id
    record = await eventually(lambda: _deleted(bot, job_of(answer)))
    assert record.result["deleted"]


async def test_delete_by_someone_else_is_refused_but_moderators_may(bot, stub):
    answer = await qwerty(stub, {"prompt_prefix": "a"}, user_id=MEMBER_ID)
    refused = await click(stub, answer.message_id, f"sq:del:{job_of(answer)}", user_id=ADMIN_ID)
    ack = await refused.wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral and "Only the member who asked" in ack.content
    assert stub.message(answer.message_id)  # still there
    moderator = await click(stub, answer.message_id, f"sq:del:{job_of(answer)}", user_id=1234,
                            permissions=MANAGE_MESSAGES)
    await moderator.wait_ack()
    await stub.messages.wait_for(lambda s: s.kind == "delete" and s.message_id == answer.message_id, timeout=5)


async def test_a_banned_word_refuses_a_reroll_before_any_gpu_time(bot, stub, gpu):
    answer = await qwerty(stub, {"prompt_prefix": "a red dragon"})
    await bot.app.community.add_banned_words(stub.guild_id, ["dragon"])
    before = len(gpu.generated)
    refused = await click(stub, answer.message_id, f"sq:reroll:{job_of(answer)}")
    ack = await refused.wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral and '"dragon"' in ack.content
    await asyncio.sleep(0.1)
    assert len(gpu.generated) == before


async def test_buttons_still_work_after_the_bot_restarts(stub, tmp_path):
    settings = bot_settings(tmp_path / "data")
    async with running_bot(stub, settings, SleepyGpu()) as first:
        old = await qwerty(stub, {"prompt_prefix": "a", "seed": 5, "count": 2}, user_id=MEMBER_ID)
        await eventually(lambda: _message_recorded(first, old))
    # A new process: nothing in memory, the same DATA_DIR. The kept PNGs are gone too, so the image
    # comes from the old message's own attachment.
    for png in (settings.DATA_DIR / "images").glob("*.png"):
        png.unlink()
    gpu = SleepyGpu()
    async with running_bot(stub, settings, gpu):
        job = job_of(old)
        rerolled = await click(stub, old.message_id, f"sq:reroll:{job}")
        assert len((await rerolled.responses.wait_for(is_answer, timeout=10)).files) == 2
        menu = await (await click(stub, old.message_id, f"sq:var:{job}")).wait_ack()
        picked = await click(stub, menu.message_id, f"sq:var:{job}", component_type=SELECT, values=["0"])
        await picked.responses.wait_for(is_answer, timeout=10)
        assert gpu.generated[-1].init_image == old.files[0].data
        deleted = await click(stub, old.message_id, f"sq:del:{job}", user_id=MEMBER_ID)
        await deleted.wait_ack()
        await stub.messages.wait_for(lambda s: s.kind == "delete" and s.message_id == old.message_id, timeout=5)


async def _deleted(bot, job_id):
    record = await bot.app.jobs.get(job_id)
    return record if record.result.get("deleted") else None


async def _message_recorded(bot, answer):
    return (await bot.app.jobs.get(job_of(answer))).message_id == answer.message_id
