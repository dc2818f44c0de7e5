"""THE mapping from exceptions to what a member reads, shared by every front end (Discord, the shell).

`reply_for` decides, in this order (the first match wins):

1. MemberError (over a per-user limit, not an admin) and CommunityError (a banned word, a withheld or
   already shared image, no gallery set): its own message.
2. PromptTooLong, then any other InvalidRequest (bad option, unknown subject, rejected images): the
   service's message, which names the field or lists the reasons.
3. GpuBusy, GpuTimeout, ModelNotDeployed, MissingCredentials: the service's message plus what to do.
4. Any other GpuServiceError (RemoteError, TrainingFailed): its message.
5. StorageBusy (another process kept the bot's SQLite file locked): "busy, try again", with a reference;
   the caller logs it, as an outage an operator should see.
6. TimeoutError raised on our side (a wait of ours ran out): "timed out".
7. Anything else is unexpected: a short apology with a reference the logs carry; the caller logs it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from commands.community.errors import CommunityError
from commands.sqlite_file import StorageBusy
from gpu_service.errors import (
    GpuBusy,
    GpuServiceError,
    GpuTimeout,
    InvalidRequest,
    MissingCredentials,
    ModelNotDeployed,
    PromptTooLong,
)


class MemberError(Exception):
    """A refusal raised on the bot side that the member can act on; `message` is shown as-is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ErrorReply:
    text: str
    ephemeral: bool = True  # only the member who asked needs to read it
    unexpected: bool = False  # a bug or an outage: the caller logs it with its context
    reference: str = ""  # for unexpected errors: the id quoted to the member and written to the log


_ADVICE: tuple[tuple[type[GpuServiceError], str], ...] = (
    (PromptTooLong, "Shorten the prompt and try again."),
    (GpuBusy, "The GPU is busy; please try again in a minute."),
    (GpuTimeout, "It took too long; please try again (fewer images or steps help)."),
    (ModelNotDeployed, "The image service is not deployed right now; an admin needs to deploy it."),
    (MissingCredentials, "The image service is not configured; an admin needs to fix its credentials."),
)


def reply_for(error: BaseException) -> ErrorReply:
    """What to tell the member about `error` (see the module docstring for the order)."""
    if isinstance(error, MemberError):
        return ErrorReply(error.message)
    if isinstance(error, CommunityError):
        return ErrorReply(error.message)
    if isinstance(error, GpuServiceError):
        return _service_reply(error)
    reference = secrets.token_hex(4)
    if isinstance(error, StorageBusy):
        return ErrorReply(f"{StorageBusy.message} (reference `{reference}`)", unexpected=True, reference=reference)
    if isinstance(error, TimeoutError):
        return ErrorReply("That timed out on our side; please try again in a minute.", ephemeral=False)
    text = f"Sorry, something went wrong on our side (reference `{reference}`). It has been logged."
    return ErrorReply(text, unexpected=True, reference=reference)


def _service_reply(error: GpuServiceError) -> ErrorReply:
    message = error.message.strip() or error.__class__.__name__
    for kind, advice in _ADVICE:
        if isinstance(error, kind):
            return ErrorReply(_join(message, advice), ephemeral=isinstance(error, InvalidRequest))
    if isinstance(error, InvalidRequest):
        return ErrorReply(_join("That request can't be run:", message))
    return ErrorReply(message, ephemeral=False)


def _join(first: str, second: str) -> str:
    separator = "\n" if "\n" in first or "\n" in second else " "
    return f"{first}{separator}{second}"
