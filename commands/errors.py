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

Every message is cleaned before anyone reads it (`scrub`): links lose their user:password@ and query
string, file paths and raw exception text (a service message that quotes one, "(KeyError: ...)") are
replaced by a reference id, and the reply is marked unexpected so the caller logs the original with it.
"""

from __future__ import annotations

import re
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
from gpu_service.intake import redact_url

_LINK = re.compile(r"[a-z][a-z0-9+.-]*://[^\s<>`'\"]+", re.IGNORECASE)
_PATH = re.compile(r"(?<![\w:/.~])(?:~|[A-Za-z]:)?(?:[/\\][\w.@+-]+){2,}[/\\]?")
_EXCEPTION_DETAIL = re.compile(r"\(\s*[\w.]*(?:Error|Exception|Exit|Interrupt)\b\s*:")


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
    """What to tell the member about `error` (see the module docstring for the order), cleaned by `scrub`."""
    reply = _reply(error)
    text, private = scrub(reply.text)
    if not private:
        return ErrorReply(text, reply.ephemeral, reply.unexpected, reply.reference)
    reference = reply.reference or secrets.token_hex(4)
    if reference not in text:
        text = f"{text} (Reference `{reference}`: the details are in the log.)"
    return ErrorReply(text, reply.ephemeral, unexpected=True, reference=reference)


def scrub(text: str) -> tuple[str, bool]:
    """`text` with links redacted, file paths as "a file" and quoted exception text left out; whether either
    of the last two was there (then the original belongs in the log, not in the reply)."""
    text = redact_links(text)
    cleaned = _PATH.sub("a file", _without_exception_detail(text))
    return cleaned, cleaned != text


def redact_links(text: str) -> str:
    """Every link in `text` without its user:password@ and its query string."""
    return _LINK.sub(_redacted, text)


def _redacted(match: re.Match) -> str:
    link = match.group(0)
    trailing = link[len(link.rstrip(".,:;!?)")):]  # sentence punctuation after a link is not part of it
    return redact_url(link[: len(link) - len(trailing)]) + trailing


def _without_exception_detail(text: str) -> str:
    """Each " (SomeError: ...)" left out, to its closing parenthesis (or the end when it has none)."""
    match = _EXCEPTION_DETAIL.search(text)
    while match is not None:
        depth, end = 0, len(text)
        for index in range(match.start(), len(text)):
            depth += {"(": 1, ")": -1}.get(text[index], 0)
            if depth == 0:
                end = index + 1
                break
        text = f"{text[: match.start()].rstrip()}{text[end:]}"
        match = _EXCEPTION_DETAIL.search(text)
    return text


def _reply(error: BaseException) -> ErrorReply:
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
