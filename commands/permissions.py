"""Who may train: checked at run time on every /train.

Discord's `default_permissions` only hides a command from non-admins by default, and server admins can
change that in their settings, so it is a hint, never the check. The check is here: a listed user id,
a listed role, or the Administrator permission in the guild where the command runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from commands.errors import MemberError


class NotAuthorized(MemberError):
    """The member may not run this command."""


@dataclass(frozen=True)
class Caller:
    """What the front end knows about who is asking."""

    user_id: int
    role_ids: frozenset[int] = frozenset()
    administrator: bool = False  # the Administrator permission where the command was invoked


@dataclass(frozen=True)
class AdminPolicy:
    user_ids: frozenset[int] = frozenset()
    role_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, user_ids: Iterable[int] = (), role_ids: Iterable[int] = ()) -> AdminPolicy:
        return cls(frozenset(user_ids), frozenset(role_ids))

    def allows(self, caller: Caller) -> bool:
        return caller.administrator or caller.user_id in self.user_ids or bool(caller.role_ids & self.role_ids)

    def require(self, caller: Caller, action: str = "train the model") -> None:
        """Raise NotAuthorized unless the caller is an admin."""
        if not self.allows(caller):
            raise NotAuthorized(
                f"Only admins can {action}. Ask a server admin, or someone listed in the bot's "
                "ADMIN_USER_IDS or ADMIN_ROLE_IDS."
            )
