"""Persistent component ids round-trip, fit Discord's limit and reject what is not ours; access rules."""

from __future__ import annotations

import re

import pytest

from bot import custom_ids
from commands.community.access import can_delete, can_remove_post
from bot.custom_ids import Action, ComponentId, decode, parse_index, template

JOB = "a1b2c3d4e5f6"
LONGEST = "J" * 64


@pytest.mark.parametrize(
    ("encoded", "meaning"),
    [
        (custom_ids.reroll(JOB), ComponentId(Action.REROLL, JOB)),
        (custom_ids.variations(JOB), ComponentId(Action.VARIATIONS, JOB)),
        (custom_ids.variations(JOB, 2), ComponentId(Action.VARIATIONS, JOB, 2)),
        (custom_ids.share(JOB, 0), ComponentId(Action.SHARE, JOB, 0)),
        (custom_ids.share(JOB), ComponentId(Action.SHARE, JOB)),
        (custom_ids.delete(JOB), ComponentId(Action.DELETE, JOB)),
        (custom_ids.edit(JOB), ComponentId(Action.EDIT, JOB)),
        (custom_ids.vote("s1"), ComponentId(Action.VOTE, "s1")),
        (custom_ids.remove("s1"), ComponentId(Action.REMOVE, "s1")),
        (custom_ids.share(LONGEST, 99), ComponentId(Action.SHARE, LONGEST, 99)),
    ],
)
def test_custom_ids_round_trip_within_discords_limit(encoded, meaning):
    assert decode(encoded) == meaning and meaning.encode() == encoded
    assert len(encoded) <= custom_ids.MAX_LENGTH
    assert re.fullmatch(template(meaning.action), encoded)


def test_a_messages_generation_is_read_from_its_components_and_only_from_ours():
    assert custom_ids.job_of(["other:thing", custom_ids.vote("s1"), custom_ids.edit(JOB)]) == JOB
    assert custom_ids.job_of([custom_ids.vote("s1"), custom_ids.remove("s1"), "sq:reroll:bad id"]) is None


def test_the_format_is_stable():
    assert custom_ids.reroll(JOB) == f"sq:reroll:{JOB}"
    assert custom_ids.share(JOB, 1) == f"sq:share:{JOB}:1"
    assert custom_ids.vote("abc") == "sq:vote:abc"


@pytest.mark.parametrize(
    "junk",
    ["", "sq", "sq:reroll", "sq:reroll:", f"xx:reroll:{JOB}", f"sq:nope:{JOB}", f"sq:reroll:{JOB}:1",
     "sq:vote:s1:0", f"sq:share:{JOB}:01", f"sq:share:{JOB}:100", f"sq:share:{JOB}:-1", f"sq:share:{JOB}:",
     f"sq:share:{JOB}:1:2", "sq:reroll:has space", "sq:reroll:" + "J" * 65, f"SQ:REROLL:{JOB}",
     f" sq:reroll:{JOB}", f"sq:reroll:{JOB}\n", "persistent_view:confirm"],
)
def test_decode_rejects_malformed_and_foreign_ids(junk):
    assert decode(junk) is None


@pytest.mark.parametrize(
    "bad", [ComponentId(Action.REROLL, JOB, 1), ComponentId(Action.SHARE, JOB, 100),
            ComponentId(Action.DELETE, "a:b"), ComponentId(Action.VOTE, "")],
)
def test_encode_refuses_ids_decode_would_reject(bad):
    with pytest.raises(ValueError):
        bad.encode()


@pytest.mark.parametrize(("value", "index"), [("0", 0), ("3", 3), ("03", None), ("x", None), ("", None)])
def test_select_values_parse_to_image_indexes(value, index):
    assert parse_index(value) == index


@pytest.mark.parametrize(
    ("requester", "user", "manage_messages", "allowed"),
    [("42", "42", False, True), ("42", "43", False, False), ("42", "43", True, True), ("", "", False, False)],
)
def test_delete_is_for_the_requester_or_moderators(requester, user, manage_messages, allowed):
    assert can_delete(requester, user, manage_messages) is allowed


@pytest.mark.parametrize(("manage_messages", "allowed"), [(True, True), (False, False)])
def test_removing_a_gallery_post_is_for_moderators(manage_messages, allowed):
    assert can_remove_post(manage_messages) is allowed
