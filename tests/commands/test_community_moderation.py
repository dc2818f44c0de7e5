"""Banned words: whole words, any case, across every prompt field, refused before any GPU time."""

from __future__ import annotations

import pytest

from commands.community import BannedWordError, CommunityError, CommunityService, CommunityStore
from commands.community.moderation import find_banned, normalize_word, parse_word_list
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
def test_a_banned_word_in_any_prompt_field_is_refused_naming_the_word(service, field):
    service.add_banned_words(GUILD, ["Gore"])
    texts = {"prefix": "a painting of a", "postfix": "in space", "negative": "blurry"}
    texts[field] += " GORE"
    with pytest.raises(BannedWordError) as refused:
        service.check_prompt(GUILD, texts["prefix"], texts["postfix"], texts["negative"])
    assert isinstance(refused.value, InvalidRequest)
    assert refused.value.word == "gore" and '"gore"' in refused.value.message
    assert "Nothing was generated" in refused.value.message


def test_clean_prompts_and_other_guilds_pass(service):
    service.add_banned_words(GUILD, ["ass"])
    service.check_prompt(GUILD, "a class photo of a", "with a bass", "")
    service.check_prompt("other-guild", "kick ass", "")


def test_banned_words_are_normalized_added_once_and_removable(service):
    added = service.add_banned_words(GUILD, ["Gore", " gore ", "Blood  Bath"], by="admin")
    assert added == ["gore", "blood bath"]
    assert service.add_banned_words(GUILD, ["GORE", "nsfw"]) == ["nsfw"]
    assert service.banned_words(GUILD) == ["blood bath", "gore", "nsfw"]
    assert service.remove_banned_words(GUILD, ["NSFW", "never-banned"]) == ["nsfw"]
    assert service.banned_words(GUILD) == ["blood bath", "gore"]
    service.check_prompt(GUILD, "nsfw")


@pytest.mark.parametrize("word", ["", "!!!", "x" * 65])
def test_a_banned_word_must_be_a_word(service, word):
    with pytest.raises(CommunityError):
        service.add_banned_words(GUILD, [word])
    assert service.banned_words(GUILD) == []


def test_parse_word_list_splits_on_commas_and_lines_but_keeps_phrases():
    assert parse_word_list("gore, blood bath;\nnsfw,, ") == ["gore", "blood bath", "nsfw"]
