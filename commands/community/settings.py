"""A server's own settings: the /qwerty defaults its members get, spoilers, and its gallery.

`ServerSettings` is what the community store keeps per guild; `SettingsChange` is what an admin asked to
change (None: leave as it is). `change_settings` is the use case every front end calls: it checks the
change (a default subject must be one the server sees, the steps within the request's own bounds) before
anything is written. The defaults apply only to options a member leaves empty, and are read from memory
at admission (`CommunityService.defaults_for`), so /qwerty does no I/O before Discord's acknowledgement.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from commands.community.errors import CommunityError
from commands.subjects import SubjectCatalog
from commands.validation import build
from gpu_service.schemas import GenerateRequest
from gpu_service.settings import SUBJECT_NAME_PATTERN

BOT_STEPS = GenerateRequest.model_fields["steps"].default


@dataclass(frozen=True)
class ServerSettings:
    gallery_channel_id: str | None = None
    spoiler: bool = False
    default_subject: str | None = None  # a name, resolved in the server at each request
    default_steps: int | None = None
    gallery_enabled: bool = True

    def request_defaults(self) -> dict[str, Any]:
        """The /qwerty options this server fills in when a member leaves them empty."""
        defaults = {"subject": self.default_subject, "steps": self.default_steps}
        return {name: value for name, value in defaults.items() if value is not None}


@dataclass(frozen=True)
class SettingsChange:
    default_subject: str | None = None
    default_steps: int | None = None
    spoiler: bool | None = None
    gallery_channel_id: str | None = None
    gallery_enabled: bool | None = None

    def __bool__(self) -> bool:
        return bool(self.values())

    def values(self) -> dict[str, Any]:
        """The settings to write, by column name."""
        return {name: value for name, value in asdict(self).items() if value is not None}


class SettingsKeeper(Protocol):
    async def update_settings(self, guild_id: str, change: SettingsChange) -> ServerSettings:
        """Store the change (CommunityService does, and refreshes the defaults it keeps in memory)."""


async def change_settings(
    community: SettingsKeeper, catalog: SubjectCatalog, guild_id: str, change: SettingsChange,
    *, global_subject: str,
) -> ServerSettings:
    """Check the change, store it, and return the server's settings now; CommunityError says what is wrong."""
    if change.default_steps is not None:
        build(GenerateRequest, prompt_prefix="", subject=global_subject, steps=change.default_steps)
    if change.default_subject is not None:
        name = change.default_subject.strip().lower()
        await _check_subject(catalog, name, guild_id, global_subject)
        change = SettingsChange(**{**change.values(), "default_subject": name})
    return await community.update_settings(guild_id, change)


async def _check_subject(catalog: SubjectCatalog, name: str, guild_id: str, global_subject: str) -> None:
    if not re.fullmatch(SUBJECT_NAME_PATTERN, name):
        raise CommunityError("`subject` may use a-z, 0-9, _ and -, up to 32 characters.")
    if name == global_subject:
        return
    if not any(version.name == name for version in await catalog.matching(name, guild_id)):
        raise CommunityError(f"This server has no subject `{name}`; /models lists the ones it can use.")


def settings_text(settings: ServerSettings, global_subject: str) -> str:
    """The server's settings as an admin reads them, with what an unset default falls back to."""
    subject = f"`{settings.default_subject}`" if settings.default_subject else f"`{global_subject}` (the bot's)"
    steps = f"{settings.default_steps}" if settings.default_steps else f"{BOT_STEPS} (the bot's)"
    if not settings.gallery_enabled:
        gallery = "off (Share is refused)"
    elif settings.gallery_channel_id:
        gallery = f"on, in <#{settings.gallery_channel_id}>"
    else:
        gallery = "on, but no channel set yet"
    return "\n".join([
        "This server's settings:",
        f"- default subject: {subject}",
        f"- default steps: {steps}",
        f"- spoilers: {'on' if settings.spoiler else 'off'}",
        f"- gallery: {gallery}",
    ])
