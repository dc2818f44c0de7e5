"""Who may do what, checked at run time on every admin command.

A public bot serves many servers with one model registry and one GPU bill, so there are two kinds of admin:

- operators (OPERATOR_USER_IDS) run the deployment: admins everywhere, and the only ones who may train,
  roll back or delete a global subject (the default subject, or one an operator trained);
- a server's admins (the Administrator permission there, or a role of ADMIN_ROLE_IDS, which belongs to
  one server) may do so only for subjects their own server owns. A server's /train makes or retrains its
  own subject (`name@<guild id>`, gpu_service/subjects.py), which shadows a global one of the same name there.

Discord's `default_permissions` only hides a command from non-admins by default, and server admins can
change that in their settings, so it is a hint, never the check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from commands.errors import MemberError
from gpu_service.subjects import GLOBAL


class NotAuthorized(MemberError):
    """The member may not run this command."""


@dataclass(frozen=True)
class Caller:
    """What the front end knows about who is asking, and where."""

    user_id: int
    role_ids: frozenset[int] = frozenset()
    administrator: bool = False  # the Administrator permission where the command was invoked
    guild_id: str = ""
    operator: bool = False  # the shell and `make model`: the deployment's own tools

    @classmethod
    def local_operator(cls) -> Caller:
        return cls(0, operator=True)


@dataclass(frozen=True)
class AdminPolicy:
    operator_ids: frozenset[int] = frozenset()
    role_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, operator_ids: Iterable[int] = (), role_ids: Iterable[int] = ()) -> AdminPolicy:
        return cls(frozenset(operator_ids), frozenset(role_ids))

    def is_operator(self, caller: Caller) -> bool:
        return caller.operator or caller.user_id in self.operator_ids

    def allows(self, caller: Caller) -> bool:
        """An admin of the server the command runs in (or an operator)."""
        return self.is_operator(caller) or caller.administrator or bool(caller.role_ids & self.role_ids)

    def require(self, caller: Caller, action: str = "train the model") -> None:
        """Raise NotAuthorized unless the caller is an admin here."""
        if not self.allows(caller):
            raise NotAuthorized(
                f"Only admins can {action}. Ask a server admin, or someone with a role the bot's operators "
                "listed in ADMIN_ROLE_IDS."
            )

    def require_owner(self, caller: Caller, subject: str, owner: str, action: str) -> None:
        """Raise NotAuthorized unless the caller may change `subject`, owned by `owner` (a guild id or GLOBAL)."""
        self.require(caller, action)
        if self.is_operator(caller) or (owner != GLOBAL and owner == caller.guild_id):
            return
        whose = "a global subject, shared by every server" if owner == GLOBAL else "another server's subject"
        raise NotAuthorized(
            f"`{subject}` is {whose}: only the bot's operators can {action} it. Your server's admins can train "
            f"a subject of its own with `/train subject:{subject}`."
        )

    def new_subject_owner(self, caller: Caller) -> str:
        """Who owns a subject this caller creates: operators make global subjects, server admins their server's."""
        return GLOBAL if self.is_operator(caller) else caller.guild_id


def visible(owner: str, guild_id: str, *, everything: bool = False) -> bool:
    """Whether a server sees a subject: the global ones and its own (`everything`: the local tools)."""
    return everything or owner == GLOBAL or owner == guild_id
