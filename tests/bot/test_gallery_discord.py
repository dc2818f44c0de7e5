"""The gallery through the real discord.py client: /gallery, Share once, votes, /top per period, banned
words, withheld images, spoilers, moderators' Remove, and the W&B community events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from commands.wandb_log import EVENTS_KEY
from gpu_service.schemas import GeneratedImage
from tests.bot.conftest import ADMIN_ID, MEMBER_ID, bot_settings, running_bot
from tests.bot.helpers import (
    DEFERRED, MANAGE_MESSAGES, MESSAGE, UPDATE, buttons, click, custom_ids, job_of, qwerty,
)
from tests.support.sleepy_gpu import SleepyGpu

CHANNEL = 7


@pytest.fixture
def gallery_id(stub) -> str:
    return stub.add_text_channel("gallery")  # before the bot connects: its GUILD_CREATE lists it


@pytest.fixture
async def bot(stub, gpu, gallery_id, tmp_path) -> AsyncIterator:
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu) as running:
        await set_gallery(stub, gallery_id)
        yield running


async def set_gallery(stub, gallery_id):
    option = [{"name": "channel", "type": CHANNEL, "value": gallery_id}]
    ack = await (await stub.slash_command("gallery", option, user_id=ADMIN_ID)).wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral and f"<#{gallery_id}>" in ack.content


def gallery_posts(stub, gallery_id):
    return [s for s in stub.messages if s.kind == "create" and s.channel_id == gallery_id]


async def share(stub, answer, index=0, **who):
    clicked = await click(stub, answer.message_id, f"sq:share:{job_of(answer)}:{index}", **who)
    return clicked, await clicked.wait_ack()


async def test_share_posts_once_to_the_gallery_with_credit_and_a_link_back(bot, stub, gallery_id):
    answer = await qwerty(stub, {"prompt_prefix": "a painting of a", "seed": 42}, user_id=MEMBER_ID)
    clicked, ack = await share(stub, answer, user_id=MEMBER_ID)
    assert ack.callback_type == DEFERRED and ack.ephemeral
    done = await clicked.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
    [post] = gallery_posts(stub, gallery_id)
    link = f"https://discord.com/channels/{stub.guild_id}/{gallery_id}/{post.message_id}"
    assert done.content == f"Shared to the gallery: {link}"
    assert "a painting of a qwerty dog" in post.content and "seed 42" in post.content
    assert "qwerty (base model)" in post.content and f"<@{MEMBER_ID}>" in post.content
    assert f"/{stub.channel_id}/{answer.message_id})" in post.content  # the link back
    assert post.payload["allowed_mentions"]["parse"] == []  # credit, never a ping
    assert post.files[0].data == answer.files[0].data
    vote, remove = buttons(stub, post.message_id)
    assert vote.startswith("sq:vote:") and remove == f"sq:rm:{vote.split(':')[2]}"
    again, second = await share(stub, answer, user_id=ADMIN_ID)
    assert second.callback_type == MESSAGE and second.ephemeral and link in second.content
    assert "already in the gallery" in second.content and len(gallery_posts(stub, gallery_id)) == 1


async def test_without_a_gallery_channel_share_says_so(stub, gpu, tmp_path):
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu):
        answer = await qwerty(stub, {"prompt_prefix": "a"})
        _, ack = await share(stub, answer)
        assert ack.ephemeral and "/gallery" in ack.content


async def test_a_star_toggles_each_members_vote_and_the_label_shows_the_count(bot, stub, gallery_id):
    answer = await qwerty(stub, {"prompt_prefix": "a"})
    await share(stub, answer)
    post = (await stub.messages.wait_for(lambda s: s.channel_id == gallery_id, timeout=5)).message_id
    [vote] = [c for c in buttons(stub, post) if c.startswith("sq:vote:")]
    share_id = vote.split(":")[2]
    first = await (await click(stub, post, vote, user_id=1)).wait_ack()
    assert first.callback_type == UPDATE and buttons(stub, post)[vote]["label"] == "1"
    await (await click(stub, post, vote, user_id=2)).wait_ack()
    assert buttons(stub, post)[vote]["label"] == "2"
    again = await (await click(stub, post, vote, user_id=1)).wait_ack()  # the same member: vote taken back
    assert again.callback_type == UPDATE and buttons(stub, post)[vote]["label"] == "1"
    assert await bot.app.community.votes(stub.guild_id, share_id) == 1
    await (await click(stub, post, vote, user_id=1)).wait_ack()  # and given again
    assert buttons(stub, post)[vote]["label"] == "2"
    assert await bot.app.community.votes(stub.guild_id, share_id) == 2


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


async def test_top_orders_by_votes_within_each_period(bot, stub, gallery_id):
    clock = Clock()
    bot.app.community.clock = clock
    start = clock.now
    posts = {}
    for name, age, votes in (("old", timedelta(days=8), 3), ("week", timedelta(days=2), 1), ("today", timedelta(0), 2)):
        clock.now = start - age
        answer = await qwerty(stub, {"prompt_prefix": f"picture {name}"})
        clicked, _ = await share(stub, answer)
        await clicked.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
        posts[name] = gallery_posts(stub, gallery_id)[-1].message_id
        vote = next(c for c in buttons(stub, posts[name]) if c.startswith("sq:vote:"))
        for voter in range(votes):
            await (await click(stub, posts[name], vote, user_id=100 + voter)).wait_ack()
    clock.now = start

    async def top(period):
        ack = await (await stub.slash_command("top", {"period": period}, user_id=MEMBER_ID)).wait_ack()
        assert ack.callback_type == MESSAGE and not ack.ephemeral
        return ack.content.splitlines()[1:]

    def names(lines):
        return [line.split("[picture ")[1].split()[0] for line in lines]

    every = await top("all")
    assert names(every) == ["old", "today", "week"]
    assert every[0].startswith("1. ⭐ 3") and posts["old"] in every[0]
    assert names(await top("week")) == ["today", "week"]
    assert names(await top("day")) == ["today"]


async def test_moderators_remove_a_post_which_leaves_top_others_are_refused(bot, stub, gallery_id):
    answer = await qwerty(stub, {"prompt_prefix": "a"}, user_id=MEMBER_ID)
    await share(stub, answer, user_id=MEMBER_ID)
    post = (await stub.messages.wait_for(lambda s: s.channel_id == gallery_id, timeout=5)).message_id
    remove = next(c for c in buttons(stub, post) if c.startswith("sq:rm:"))
    refused = await (await click(stub, post, remove, user_id=MEMBER_ID)).wait_ack()
    assert refused.ephemeral and "Only moderators" in refused.content
    removed = await click(stub, post, remove, user_id=ADMIN_ID, permissions=MANAGE_MESSAGES)
    done = await removed.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
    assert "Removed" in done.content
    await stub.messages.wait_for(lambda s: s.kind == "delete" and s.message_id == post, timeout=5)
    top = await (await stub.slash_command("top", {"period": "all"})).wait_ack()
    assert "No images shared" in top.content
    _, again = await share(stub, answer, user_id=MEMBER_ID)
    assert again.ephemeral and "removed" in again.content


async def test_a_banned_word_is_refused_before_any_gpu_time_and_only_admins_manage_the_list(bot, stub, gpu):
    member = await (await stub.slash_command("banned", {"action": "add", "words": "x"}, user_id=MEMBER_ID)).wait_ack()
    assert member.ephemeral and "Only admins" in member.content
    added = await (await stub.slash_command("banned", {"action": "add", "words": "dragon, sea serpent"},
                                            user_id=ADMIN_ID)).wait_ack()
    assert added.ephemeral and "`dragon`" in added.content and "`sea serpent`" in added.content
    refused = await (await stub.slash_command("qwerty", {"prompt_prefix": "a red DRAGON"}, user_id=MEMBER_ID)).wait_ack()
    assert refused.callback_type == MESSAGE and refused.ephemeral and '"dragon"' in refused.content
    await asyncio.sleep(0.1)
    assert gpu.generated == [] and await bot.app.jobs.all() == []
    listed = await (await stub.slash_command("banned", {"action": "list"}, user_id=ADMIN_ID)).wait_ack()
    assert "`dragon`" in listed.content
    await (await stub.slash_command("banned", {"action": "remove", "words": "dragon"}, user_id=ADMIN_ID)).wait_ack()
    await qwerty(stub, {"prompt_prefix": "a red dragon"}, user_id=MEMBER_ID)


class WithholdingGpu(SleepyGpu):
    """The safety checker flags the images at these indexes: they come back without pixels."""

    def __init__(self, flagged: set[int]) -> None:
        super().__init__()
        self.flagged = flagged

    def _result(self, request):
        result = super()._result(request)
        images = tuple(GeneratedImage(index=i.index, seed=i.seed, withheld=True) if i.index in self.flagged else i
                       for i in result.images)
        return result.model_copy(update={"images": images})


async def test_a_withheld_image_is_never_posted_and_the_member_is_told(stub, gallery_id, tmp_path):
    async with running_bot(stub, bot_settings(tmp_path / "data"), WithholdingGpu({1})) as bot:
        await set_gallery(stub, gallery_id)
        answer = await qwerty(stub, {"prompt_prefix": "a", "count": 2, "seed": 1})
        assert len(answer.files) == 1 and "1 image(s) withheld" in answer.content
        job = job_of(answer)
        # Only the shown image can be picked: the buttons act on it directly.
        assert custom_ids(answer.message["components"]) == [f"sq:reroll:{job}", f"sq:edit:{job}",
                                                            f"sq:var:{job}:0", f"sq:share:{job}:0", f"sq:del:{job}"]
        clicked, _ = await share(stub, answer)
        await clicked.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
        [post] = gallery_posts(stub, gallery_id)
        assert post.files[0].data == answer.files[0].data
        assert not (bot.settings.DATA_DIR / "images" / f"{job}-1.png").exists()
    async with running_bot(stub, bot_settings(tmp_path / "data2"), WithholdingGpu({0, 1})):
        answer = await qwerty(stub, {"prompt_prefix": "a", "count": 2})
        assert answer.files == () and "2 image(s) withheld" in answer.content
        job = job_of(answer)
        assert custom_ids(answer.message["components"]) == [f"sq:reroll:{job}", f"sq:edit:{job}", f"sq:del:{job}"]


async def test_with_spoilers_on_pictures_and_gallery_posts_are_spoilers(bot, stub, gallery_id):
    member = await (await stub.slash_command("spoiler", {"on": True}, user_id=MEMBER_ID)).wait_ack()
    assert member.ephemeral and "Only admins" in member.content
    ack = await (await stub.slash_command("spoiler", {"on": True}, user_id=ADMIN_ID)).wait_ack()
    assert ack.ephemeral and "spoilers" in ack.content
    answer = await qwerty(stub, {"prompt_prefix": "a"})
    assert answer.files[0].filename.startswith("SPOILER_")
    clicked, _ = await share(stub, answer)
    await clicked.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
    [post] = gallery_posts(stub, gallery_id)
    assert post.files[0].filename == f"SPOILER_{job_of(answer)}-0.png"


async def test_shares_votes_and_deletions_are_logged_against_the_row_id(stub, gallery_id, tmp_path):
    from tests.support.wandb_offline import read_offline_runs

    settings = bot_settings(tmp_path / "data", WANDB_MODE="offline")
    async with running_bot(stub, settings, SleepyGpu()):
        await set_gallery(stub, gallery_id)
        answer = await qwerty(stub, {"prompt_prefix": "a"}, user_id=MEMBER_ID)
        clicked, _ = await share(stub, answer, user_id=MEMBER_ID)
        await clicked.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
        post = gallery_posts(stub, gallery_id)[0].message_id
        vote = next(c for c in buttons(stub, post) if c.startswith("sq:vote:"))
        await (await click(stub, post, vote, user_id=77)).wait_ack()
        await (await click(stub, post, vote, user_id=77)).wait_ack()  # a second ⭐ takes it back
        await (await click(stub, answer.message_id, f"sq:del:{job_of(answer)}", user_id=MEMBER_ID)).wait_ack()
        await stub.messages.wait_for(lambda s: s.kind == "delete", timeout=5)
    [run] = read_offline_runs(settings.wandb_dir)
    row_id = f"{job_of(answer)}-0"
    events = [(e["event"], e["row_id"], e["user_id"]) for e in run.table_rows(EVENTS_KEY)]
    assert events == [("share", row_id, str(MEMBER_ID)), ("vote", row_id, "77"), ("unvote", row_id, "77"),
                      ("delete", row_id, str(MEMBER_ID))]
    assert any(row["row_id"] == row_id for row in run.table_rows("generations"))


async def test_a_gallery_channel_the_bot_cannot_post_in_is_explained_and_share_works_again_later(
    bot, stub, gallery_id
):
    await bot.app.community.set_gallery_channel(stub.guild_id, "999")  # a channel that is gone
    answer = await qwerty(stub, {"prompt_prefix": "a"})
    clicked, _ = await share(stub, answer)
    failed = await clicked.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
    assert "can't post in the gallery channel <#999>" in failed.content and "/gallery" in failed.content
    await set_gallery(stub, gallery_id)
    clicked, _ = await share(stub, answer)
    done = await clicked.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
    assert done.content.startswith("Shared to the gallery") and len(gallery_posts(stub, gallery_id)) == 1
