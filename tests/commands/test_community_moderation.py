"""Banned words: whole words, any case, across every prompt field, refused before any GPU time."""

from __future__ import annotations

import threading

import pytest

from commands.community import BannedWordError, CommunityError, CommunityService, CommunityStore
from commands.community.moderation import BannedList, find_banned, normalize_word, parse_word_list
from gpu_service.errors import InvalidRequest

GUILD = "7"


class Recorder:
    def __init__(self) -> None:
        self.events = []

    def log_event(self, event) -> None:
        self.events.append(event)


@pytest.fixture
def service(tmp_path):
    with CommunityStore(tmp_path / "community.sqlite3") as store:
        yield CommunityService(store, Recorder())


@pytest.mark.parametrize(
    ("banned", "text", "found"),
    [
        ("gore", "a gore scene", "gore"),
        ("gore", "A GORE scene", "gore"),
        ("Gore", "gore!", "gore"),
        ("gore", "(gore:1.3), blood", "gore"),
        ("ass", "a class portrait", None),
        ("ass", "bass guitar, assorted colours", None),
        ("ass", "kick ass", "ass"),
        ("ass", "a.s.s", "ass"),
        ("ass", "a s s", "ass"),
        ("ass", "as-s", "ass"),
        ("ass", "glass.ass", "ass"),
        ("cafe", "Café au lait", "cafe"),
        ("blood bath", "a Blood   bath at dawn", "blood bath"),
        ("blood bath", "blood, then a bath", None),
        ("gore", "", None),
    ],
)
def test_find_banned_matches_whole_words_only(banned, text, found):
    assert find_banned([normalize_word(banned)], text) == found


@pytest.mark.parametrize("field", ["prefix", "postfix", "negative"])
async def test_a_banned_word_in_any_prompt_field_is_refused_naming_the_word(service, field):
    await service.add_banned_words(GUILD, ["Gore"])
    texts = {"prefix": "a painting of a", "postfix": "in space", "negative": "blurry"}
    texts[field] += " GORE"
    with pytest.raises(BannedWordError) as refused:
        service.check_prompt(GUILD, texts["prefix"], texts["postfix"], texts["negative"])
    assert isinstance(refused.value, InvalidRequest)
    assert refused.value.word == "gore" and '"gore"' in refused.value.message
    assert "Nothing was generated" in refused.value.message


async def test_clean_prompts_and_other_guilds_pass(service):
    await service.add_banned_words(GUILD, ["ass"])
    service.check_prompt(GUILD, "a class photo of a", "with a bass", "")
    service.check_prompt("other-guild", "kick ass", "")


async def test_banned_words_are_normalized_added_once_and_removable(service):
    added = await service.add_banned_words(GUILD, ["Gore", " gore ", "Blood  Bath"], by="admin")
    assert added == ["gore", "blood bath"]
    assert await service.add_banned_words(GUILD, ["GORE", "nsfw"]) == ["nsfw"]
    assert service.banned_words(GUILD) == ["blood bath", "gore", "nsfw"]
    assert await service.remove_banned_words(GUILD, ["NSFW", "never-banned"]) == ["nsfw"]
    assert service.banned_words(GUILD) == ["blood bath", "gore"]
    service.check_prompt(GUILD, "nsfw")


@pytest.mark.parametrize("word", ["", "!!!", "x" * 65])
async def test_a_banned_word_must_be_a_word(service, word):
    with pytest.raises(CommunityError):
        await service.add_banned_words(GUILD, [word])
    assert service.banned_words(GUILD) == []


def test_parse_word_list_splits_on_commas_and_lines_but_keeps_phrases():
    assert parse_word_list("gore, blood bath;\nnsfw,, ") == ["gore", "blood bath", "nsfw"]


class CountingWords(list):
    """A reading of a prompt that counts how many times the matcher looks at one of its words."""

    looks = 0

    def __getitem__(self, position):
        self.looks += 1
        return super().__getitem__(position)


def looks_to_check(banned: BannedList, words: list[str]) -> int:
    reading = CountingWords(words)
    assert banned.find_in_words(reading) is None
    return reading.looks


def test_checking_a_worst_case_prompt_costs_work_linear_in_its_length():
    """200 phrases that share a long run of "a"s with a prompt made only of "a"s: each start of the
    prompt walks at most one phrase's words, so 4x the prompt is 4x the work, whatever the list."""
    banned = BannedList(normalize_word("a " * 30 + f"end{i}") for i in range(200))
    short, long = looks_to_check(banned, ["a"] * 500), looks_to_check(banned, ["a"] * 2000)
    assert short <= 31 * 500 and long <= 31 * 2000  # at most one phrase's 31 words per start
    assert long / short < 4.1  # 4x the prompt, 4x the work (a quadratic check would do 16x)
    assert looks_to_check(BannedList(["b"]), ["a"] * 2000) == 2000  # one look per word when no entry starts there


@pytest.mark.parametrize("prompt", ["a " * 500, ".a" * 500, "a.a " * 250])
def test_worst_case_prompts_are_checked_in_every_reading(prompt):
    banned = [normalize_word("a " * 30 + f"end{i}") for i in range(199)] + [normalize_word("a a a")]
    assert find_banned(banned, prompt) == "a a a"


def test_the_first_entry_of_the_list_is_named_when_several_match():
    assert BannedList(["blood", "blood bath", "gore"]).find("gore and a blood bath") == "blood"


async def test_the_check_before_the_ack_reads_memory_only(tmp_path):
    """The compiled list is loaded when the service starts and replaced on each change: the check works
    with the store closed."""
    with CommunityStore(tmp_path / "community.sqlite3") as store:
        await CommunityService(store, Recorder()).add_banned_words(GUILD, ["gore"])
    with CommunityStore(tmp_path / "community.sqlite3") as store:
        service = CommunityService(store, Recorder())
        await service.add_banned_words(GUILD, ["blood bath"])
        await service.remove_banned_words(GUILD, ["gore"])
    service.check_prompt(GUILD, "a gore scene")
    with pytest.raises(BannedWordError):
        service.check_prompt(GUILD, "a Blood-bath")
    assert service.banned_words(GUILD) == ["blood bath"]


class ThreadRecordingStore(CommunityStore):
    """The real store, noting the thread of every use of its connection."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.threads: set[int] = set()

    def _locked(self):
        self.threads.add(threading.get_ident())
        return super()._locked()


async def test_store_calls_run_off_the_event_loop(tmp_path):
    store = ThreadRecordingStore(tmp_path / "community.sqlite3")
    service = CommunityService(store, Recorder())
    store.threads.clear()  # opening the file and loading the lists happen once, at start-up
    await service.set_gallery_channel(GUILD, "500")
    await service.set_spoiler(GUILD, True)
    assert await service.spoiler(GUILD) and await service.gallery_channel(GUILD) == "500"
    await service.add_banned_words(GUILD, ["gore"])
    decision = await service.begin_share(GUILD, "gen-0", "1", "1", "p", 1, "qwerty", 3)
    await service.confirm_posted(decision.share.share_id, "500", "900")
    await service.vote(GUILD, "900", "2")
    assert [entry.votes for entry in await service.top(GUILD, "all")] == [1]
    store.close()
    assert store.threads and threading.get_ident() not in store.threads
