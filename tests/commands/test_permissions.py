"""Who may /train: listed users, listed roles, or the Administrator permission; nobody else."""

from __future__ import annotations

import pytest

from commands.permissions import AdminPolicy, Caller, NotAuthorized

POLICY = AdminPolicy.of(user_ids=[1], role_ids=[10, 11])


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [
        (Caller(1), True),  # a listed user, no roles
        (Caller(2, frozenset({11})), True),  # a listed role
        (Caller(3, administrator=True), True),  # the Administrator permission
        (Caller(4, frozenset({12, 13})), False),  # other roles only
        (Caller(5), False),
    ],
)
def test_admins_are_listed_users_listed_roles_or_administrators(caller, allowed):
    assert POLICY.allows(caller) is allowed


def test_an_empty_policy_still_lets_administrators_in():
    assert AdminPolicy().allows(Caller(1, administrator=True))
    assert not AdminPolicy().allows(Caller(1))


def test_require_refuses_with_a_message_that_says_who_can():
    with pytest.raises(NotAuthorized, match="Only admins can train the model.*ADMIN_USER_IDS"):
        POLICY.require(Caller(5))
    POLICY.require(Caller(1))
