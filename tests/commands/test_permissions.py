"""Who may do what: operators everywhere; a server's admins (Administrator, or a listed role) for their own
server's subjects only; nobody else."""

from __future__ import annotations

import pytest

from commands.permissions import GLOBAL, AdminPolicy, Caller, NotAuthorized, visible

POLICY = AdminPolicy.of(operator_ids=[1], role_ids=[10, 11])
SERVER_ADMIN = Caller(3, administrator=True, guild_id="700")


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [
        (Caller(1), True),  # an operator, no roles
        (Caller(2, frozenset({11}), guild_id="700"), True),  # a listed role
        (SERVER_ADMIN, True),  # the Administrator permission
        (Caller(4, frozenset({12, 13})), False),  # other roles only
        (Caller(5), False),
        (Caller.local_operator(), True),  # the shell and `make model`
    ],
)
def test_admins_are_operators_listed_roles_or_administrators(caller, allowed):
    assert POLICY.allows(caller) is allowed


def test_require_refuses_with_a_message_that_says_who_can():
    with pytest.raises(NotAuthorized, match="Only admins can train the model.*ADMIN_ROLE_IDS"):
        POLICY.require(Caller(5))
    POLICY.require(Caller(1))


@pytest.mark.parametrize(
    ("caller", "owner", "allowed"),
    [
        (SERVER_ADMIN, "700", True),  # its own server's subject
        (SERVER_ADMIN, GLOBAL, False),  # a global subject: operators only
        (SERVER_ADMIN, "800", False),  # another server's
        (Caller(2, frozenset({11}), guild_id="800"), "700", False),  # a listed role, in another server
        (Caller(1, guild_id="800"), "700", True),  # operators: everywhere
        (Caller(1, guild_id="800"), GLOBAL, True),
    ],
)
def test_only_the_owner_server_or_an_operator_may_change_a_subject(caller, owner, allowed):
    if allowed:
        POLICY.require_owner(caller, "dog", owner, "train")
    else:
        with pytest.raises(NotAuthorized, match="only the bot's operators can train it"):
            POLICY.require_owner(caller, "dog", owner, "train")


def test_new_subjects_belong_to_the_server_unless_an_operator_makes_them():
    assert POLICY.new_subject_owner(SERVER_ADMIN) == "700"
    assert POLICY.new_subject_owner(Caller(1, guild_id="700")) == GLOBAL


@pytest.mark.parametrize(
    ("owner", "guild", "seen"), [(GLOBAL, "700", True), ("700", "700", True), ("800", "700", False)]
)
def test_a_server_sees_the_global_subjects_and_its_own(owner, guild, seen):
    assert visible(owner, guild) is seen
    assert visible(owner, guild, everything=True)
