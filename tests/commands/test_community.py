"""The gallery core on a real SQLite file: share once, race-safe claims, votes, /top, removal, events."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest

from commands.community import (
    CommunityService, CommunityStore, GalleryNotSet, ImageWithheld, ShareNotFound, ShareRemoved,
    gallery_caption,
)
from commands.community.errors import CommunityError
from commands.wandb_log import CommunityEvent
from gpu_service.errors import InvalidRequest

GUILD, GALLERY = "7", "500"
START = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


class Recorder:
    """An EventLog that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[CommunityEvent] = []

    def log_event(self, event: CommunityEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[tuple[str, str, str]]:
        return [(event.event, event.row_id, event.user_id) for event in self.events]


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> Recorder:
    return Recorder()


@pytest.fixture
def store(tmp_path):
    with CommunityStore(tmp_path / "community.sqlite3") as store:
        yield store


@pytest.fixture
async def service(store, events, clock) -> CommunityService:
    service = CommunityService(store, events, clock=clock)
    await service.set_gallery_channel(GUILD, GALLERY)
    return service


async def begin(service: CommunityService, row_id: str = "gen1-0", shared_by: str = "42", **overrides):
    values = dict(guild_id=GUILD, row_id=row_id, shared_by=shared_by, creator_id="42",
                  prompt="a qwerty dog in space", seed=5, subject="qwerty", version=3)
    values.update(overrides)
    return await service.begin_share(**values)


async def share_posted(service: CommunityService, row_id: str, message_id: str, **overrides):
    decision = await begin(service, row_id, **overrides)
    assert decision.should_post
    return await service.confirm_posted(decision.share.share_id, GALLERY, message_id)


async def test_an_image_is_shared_once_and_a_second_share_says_where(service):
    first = await begin(service, source_link="https://discord.com/channels/7/8/100")
    assert first.kind == "post" and first.share.channel_id == GALLERY and not first.share.posted
    posted = await service.confirm_posted(first.share.share_id, GALLERY, "900")
    assert posted.link == "https://discord.com/channels/7/500/900"

    second = await begin(service, shared_by="43")
    assert second.kind == "already_shared" and not second.should_post
    assert second.share.share_id == first.share.share_id
    assert "https://discord.com/channels/7/500/900" in second.message


async def test_the_same_image_can_be_shared_in_another_guild(service):
    await share_posted(service, "gen1-0", "900")
    await service.set_gallery_channel("8", "600")
    assert (await service.begin_share("8", "gen1-0", "1", "42", "p", 1, "qwerty", 3)).should_post


@pytest.mark.parametrize("separate_connections", [False, True], ids=["one-store", "store-per-thread"])
async def test_concurrent_share_clicks_give_one_post(service, store, events, clock, separate_connections):
    threads, barrier = 12, threading.Barrier(12)
    decisions, errors = [], []

    def click(user: int) -> None:
        own = CommunityStore(store.path) if separate_connections else None
        clicker = CommunityService(own, events, clock=clock) if own else service
        try:
            barrier.wait(timeout=5)
            decisions.append(asyncio.run(begin(clicker, shared_by=str(user))))
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            if own:
                own.close()

    workers = [threading.Thread(target=click, args=(user,)) for user in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert errors == []
    assert sorted(decision.kind for decision in decisions) == ["in_progress"] * (threads - 1) + ["post"]
    assert len({decision.share.share_id for decision in decisions}) == 1


async def test_abandoned_share_can_be_retried(service):
    first = await begin(service)
    assert await service.abandon_share(first.share.share_id)
    retry = await begin(service)
    assert retry.should_post and retry.share.share_id != first.share.share_id
    with pytest.raises(ShareNotFound):
        await service.confirm_posted(first.share.share_id, GALLERY, "900")


async def test_a_share_being_posted_blocks_others_until_it_goes_stale(service, clock):
    first = await begin(service)
    assert (await begin(service)).kind == "in_progress"
    clock.now += timedelta(minutes=11)  # the bot died between claim and post
    taken_over = await begin(service)
    assert taken_over.should_post and taken_over.share.share_id != first.share.share_id


async def test_confirm_is_idempotent_and_abandon_cannot_drop_a_posted_share(service, events):
    decision = await begin(service)
    await service.confirm_posted(decision.share.share_id, GALLERY, "900")
    again = await service.confirm_posted(decision.share.share_id, GALLERY, "900")
    assert again.message_id == "900"
    assert not await service.abandon_share(decision.share.share_id)
    assert [event.event for event in events.events] == ["share"]


async def test_share_is_refused_without_a_gallery_channel(service, store):
    await service.set_gallery_channel(GUILD, None)
    with pytest.raises(GalleryNotSet, match="An admin must set the gallery channel with /gallery first."):
        await begin(service)
    assert store.find_by_row(GUILD, "gen1-0") is None


async def test_a_withheld_image_is_never_shared(service, store):
    with pytest.raises(ImageWithheld) as refused:
        await begin(service, withheld=True)
    assert isinstance(refused.value, InvalidRequest) and "safety checker" in refused.value.message
    assert store.find_by_row(GUILD, "gen1-0") is None


@pytest.mark.parametrize(
    ("voters", "counted", "total"),
    [
        (["1"], [True], 1),
        (["1", "1"], [True, False], 1),
        (["1", "2", "1", "3", "2"], [True, True, False, True, False], 3),
    ],
)
async def test_each_member_votes_once_per_post(service, voters, counted, total):
    share = await share_posted(service, "gen1-0", "900")
    outcomes = [await service.vote(GUILD, share.share_id, voter) for voter in voters]
    assert [outcome.counted for outcome in outcomes] == counted
    assert outcomes[-1].total == total == await service.votes(GUILD, "900")


async def test_a_post_is_found_by_share_id_or_gallery_message_id(service):
    share = await share_posted(service, "gen1-0", "900")
    assert (await service.vote(GUILD, "900", "1")).total == 1
    assert (await service.vote(GUILD, share.share_id, "1")).counted is False
    with pytest.raises(ShareNotFound):
        await service.vote("other-guild", "900", "1")


async def test_unvote_takes_a_vote_back_once(service, events):
    share = await share_posted(service, "gen1-0", "900")
    await service.vote(GUILD, "900", "1")
    assert (await service.unvote(GUILD, "900", "1")).counted is True
    again = await service.unvote(GUILD, "900", "1")
    assert again.counted is False and again.total == 0
    assert [(kind, user) for kind, _, user in events.kinds()] == [
        ("share", "42"), ("vote", "1"), ("unvote", "1"),
    ]
    assert all(event.row_id == share.row_id for event in events.events)


@pytest.fixture
async def three_ages(service, clock):
    """Shares posted 20 days, 3 days and 2 hours before START, with 1, 3 and 2 votes."""
    for age, row_id, message_id, voters in [
        (timedelta(days=20), "old-0", "901", ["a"]),
        (timedelta(days=3), "mid-0", "902", ["a", "b", "c"]),
        (timedelta(hours=2), "new-0", "903", ["a", "b"]),
    ]:
        clock.now = START - age
        await share_posted(service, row_id, message_id)
        for voter in voters:
            await service.vote(GUILD, message_id, voter)
    clock.now = START + timedelta(days=365)  # `now` given to top() must win over the clock
    return service


@pytest.mark.parametrize(
    ("period", "expected"),
    [("day", [("new-0", 2)]), ("week", [("mid-0", 3), ("new-0", 2)]),
     ("all", [("mid-0", 3), ("new-0", 2), ("old-0", 1)])],
)
async def test_top_orders_by_votes_within_the_period(three_ages, period, expected):
    entries = await three_ages.top(GUILD, period, now=START)
    assert [(entry.row_id, entry.votes) for entry in entries] == expected
    assert entries[0].link == f"https://discord.com/channels/{GUILD}/{GALLERY}/{entries[0].message_id}"


async def test_top_breaks_ties_by_the_earlier_share_and_honours_the_limit(service, clock):
    for minute, row_id in enumerate(["b-0", "a-0", "c-0"]):
        clock.now = START + timedelta(minutes=minute)
        await share_posted(service, row_id, f"90{minute}")
    await service.vote(GUILD, "902", "x")
    assert [entry.row_id for entry in await service.top(GUILD, "all")] == ["c-0", "b-0", "a-0"]
    assert [entry.row_id for entry in await service.top(GUILD, "all", limit=2)] == ["c-0", "b-0"]


async def test_top_leaves_out_shares_not_posted_yet_and_other_guilds(service):
    await begin(service, "pending-0")
    await share_posted(service, "gen1-0", "900")
    await service.set_gallery_channel("8", "600")
    decision = await service.begin_share("8", "elsewhere-0", "1", "1", "p", 1, "qwerty", 3)
    await service.confirm_posted(decision.share.share_id, "600", "950")
    assert [entry.row_id for entry in await service.top(GUILD, "all")] == ["gen1-0"]


async def test_top_refuses_an_unknown_period(service):
    with pytest.raises(CommunityError, match="period"):
        await service.top(GUILD, "month")


async def test_a_removed_post_leaves_top_takes_no_votes_and_cannot_come_back(service, events):
    kept = await share_posted(service, "gen1-0", "900")
    removed = await share_posted(service, "gen2-0", "901")
    await service.vote(GUILD, "901", "1")
    await service.vote(GUILD, "901", "2")

    result = await service.remove_post(GUILD, "901", by="mod")
    assert result.removed and result.removed_by == "mod" and result.message_id == "901"
    assert [entry.share_id for entry in await service.top(GUILD, "all")] == [kept.share_id]
    with pytest.raises(ShareRemoved):
        await service.vote(GUILD, removed.share_id, "3")
    with pytest.raises(ShareRemoved):
        await begin(service, "gen2-0")

    await service.remove_post(GUILD, removed.share_id, by="other-mod")  # repeating changes nothing
    assert service.store.find_share(GUILD, "901").removed_by == "mod"
    assert [event.event for event in events.events].count("remove") == 1


async def test_a_share_removed_while_being_posted_is_not_confirmed(service):
    decision = await begin(service)
    await service.remove_post(GUILD, decision.share.share_id, by="mod")
    with pytest.raises(ShareNotFound):
        await service.confirm_posted(decision.share.share_id, GALLERY, "900")


async def test_removing_an_unknown_post_is_refused(service):
    with pytest.raises(ShareNotFound):
        await service.remove_post(GUILD, "nothing", by="mod")


async def test_every_community_action_is_logged_against_the_row_id(service, events, clock):
    share = await share_posted(service, "gen1-0", "900", shared_by="43")
    await service.vote(GUILD, "900", "1")
    await service.vote(GUILD, "900", "1")
    await service.unvote(GUILD, "900", "1")
    await service.remove_post(GUILD, "900", by="mod")
    service.record_deletion(GUILD, ["gen1-0", "gen1-1"], user_id="42")

    assert events.kinds() == [
        ("share", "gen1-0", "43"), ("vote", "gen1-0", "1"), ("unvote", "gen1-0", "1"),
        ("remove", "gen1-0", "mod"), ("delete", "gen1-0", "42"), ("delete", "gen1-1", "42"),
    ]
    assert all(event.guild_id == GUILD and event.at == START.isoformat() for event in events.events)
    assert f"share_id={share.share_id}" in events.events[0].detail and share.link in events.events[0].detail
    assert "votes=1" in events.events[1].detail


async def test_a_failing_event_log_does_not_undo_the_action(store, clock):
    class Broken:
        def log_event(self, event):
            raise RuntimeError("W&B is down")

    service = CommunityService(store, Broken(), clock=clock)
    await service.set_gallery_channel(GUILD, GALLERY)
    await share_posted(service, "gen1-0", "900")
    assert (await service.vote(GUILD, "900", "1")).total == 1


async def test_settings_persist_across_reopening_the_store(tmp_path, events):
    path = tmp_path / "data" / "community.sqlite3"
    with CommunityStore(path) as store:
        service = CommunityService(store, events)
        assert await service.spoiler(GUILD) is False and await service.gallery_channel(GUILD) is None
        await service.set_spoiler(GUILD, True)
        await service.set_gallery_channel(GUILD, GALLERY)
        await service.add_banned_words(GUILD, ["Gore"])
    with CommunityStore(path) as store:
        service = CommunityService(store, events)
        assert await service.spoiler(GUILD) is True and await service.spoiler("other") is False
        assert await service.gallery_channel(GUILD) == GALLERY and service.banned_words(GUILD) == ["gore"]
        await service.set_spoiler(GUILD, False)
        assert await service.spoiler(GUILD) is False and await service.gallery_channel(GUILD) == GALLERY


def test_the_store_runs_in_wal_mode(store):
    assert store._read_one("PRAGMA journal_mode") == ("wal",)


async def test_gallery_caption_credits_the_creator_and_links_back(service):
    link = "https://discord.com/channels/7/8/1"
    share = await share_posted(service, "gen1-0", "900", shared_by="43", source_link=link)
    assert gallery_caption(share) == (
        "**a qwerty dog in space**\nseed 5 · qwerty v3 · by <@42> · shared by <@43>\n"
        "[original](https://discord.com/channels/7/8/1)"
    )


def test_gallery_caption_shows_the_prompt_as_plain_text():
    class FakeShare:  # the fields gallery_caption reads
        prompt = "a **bold** [link](https://evil.example) qwerty dog"
        version, seed, subject, creator_id, shared_by, source_link = 2, 7, "qwerty", "1", "1", ""

    caption = gallery_caption(FakeShare())
    assert "\\*\\*bold\\*\\*" in caption and "\\[link\\]\\(https://evil.example\\)" in caption
    assert caption.startswith("**") and "v2" in caption
