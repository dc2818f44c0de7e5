"""Custom ids of persistent message components: they carry the job (or share) id, never state.

Format `sq:<action>:<target>[:<index>]`, at most 100 characters (Discord's limit):

    sq:reroll:<job_id>          button: same prompt, new seeds
    sq:var:<job_id>[:<index>]   Variations button or select menu (select values are image indexes)
    sq:share:<job_id>[:<index>] Share button (without an index: the bot asks which image)
    sq:del:<job_id>             Delete button
    sq:edit:<job_id>            Edit button, and the prompt form (modal) it opens
    sq:vote:<share_id>          star button on a gallery post
    sq:rm:<share_id>            moderator's Remove button on a gallery post
    sq:cancel:<job_id>          the requester's Cancel button on a request's progress message

After a restart the bot decodes the id and reads everything else from its stores. `decode` answers
None for anything it did not make (another bot's ids, truncated or edited ids), so a click on a
stale or foreign component can be ignored rather than crash a handler.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "sq"
MAX_LENGTH = 100
MAX_INDEX = 99
_TARGET = r"[A-Za-z0-9_-]{1,64}"
_INDEX = r"0|[1-9][0-9]?"


class Action(StrEnum):
    REROLL = "reroll"
    VARIATIONS = "var"
    SHARE = "share"
    DELETE = "del"
    EDIT = "edit"
    VOTE = "vote"
    REMOVE = "rm"
    CANCEL = "cancel"


_TAKES_INDEX = {Action.VARIATIONS, Action.SHARE}
GENERATION_ACTIONS = frozenset({Action.REROLL, Action.VARIATIONS, Action.SHARE, Action.DELETE, Action.EDIT})
_PATTERN = re.compile(
    rf"{PREFIX}:(?P<action>[a-z]+):(?P<target>{_TARGET})(?::(?P<index>{_INDEX}))?"
)


@dataclass(frozen=True)
class ComponentId:
    """A decoded custom id: what to do, to which job (or share), and for which image if it says."""

    action: Action
    target: str  # a job id; a share id for VOTE and REMOVE
    index: int | None = None

    def encode(self) -> str:
        if self.index is not None and self.action not in _TAKES_INDEX:
            raise ValueError(f"{self.action.name} ids carry no image index")
        if self.index is not None and not 0 <= self.index <= MAX_INDEX:
            raise ValueError(f"image index out of range: {self.index}")
        text = f"{PREFIX}:{self.action.value}:{self.target}"
        if self.index is not None:
            text += f":{self.index}"
        if decode(text) != self:
            raise ValueError(f"not a valid component id: {text!r}")
        return text


def decode(custom_id: str) -> ComponentId | None:
    """The id's meaning, or None when it is malformed or not ours."""
    match = _PATTERN.fullmatch(custom_id) if len(custom_id) <= MAX_LENGTH else None
    if match is None or match["action"] not in Action._value2member_map_:
        return None
    action = Action(match["action"])
    if match["index"] is not None and action not in _TAKES_INDEX:
        return None
    index = None if match["index"] is None else int(match["index"])
    return ComponentId(action, match["target"], index)


def template(action: Action) -> str:
    """A regex for one action's ids with named groups `target` and `index` (discord.ui.DynamicItem)."""
    index = rf"(?::(?P<index>{_INDEX}))?" if action in _TAKES_INDEX else ""
    return rf"{PREFIX}:{action.value}:(?P<target>{_TARGET}){index}"


def reroll(job_id: str) -> str:
    return ComponentId(Action.REROLL, job_id).encode()


def variations(job_id: str, index: int | None = None) -> str:
    return ComponentId(Action.VARIATIONS, job_id, index).encode()


def share(job_id: str, index: int | None = None) -> str:
    return ComponentId(Action.SHARE, job_id, index).encode()


def delete(job_id: str) -> str:
    return ComponentId(Action.DELETE, job_id).encode()


def edit(job_id: str) -> str:
    return ComponentId(Action.EDIT, job_id).encode()


def vote(share_id: str) -> str:
    return ComponentId(Action.VOTE, share_id).encode()


def remove(share_id: str) -> str:
    return ComponentId(Action.REMOVE, share_id).encode()


def cancel(job_id: str) -> str:
    return ComponentId(Action.CANCEL, job_id).encode()


def job_of(custom_ids: Iterable[str]) -> str | None:
    """The generation a message's components act on (its Reroll, Variations... ids), or None."""
    for custom_id in custom_ids:
        decoded = decode(custom_id)
        if decoded is not None and decoded.action in GENERATION_ACTIONS:
            return decoded.target
    return None


def parse_index(value: str) -> int | None:
    """A select menu value back to an image index; None when it is not one."""
    return int(value) if re.fullmatch(_INDEX, value) else None
