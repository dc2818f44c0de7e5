"""Who asked, and from where: every front end fills this in, W&B rows and job records carry it."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class RequestContext:
    front_end: str  # "discord", "shell", "cli"
    user_id: str = ""
    user_name: str = ""
    guild_id: str = ""
    channel_id: str = ""
    interaction_id: str = ""
    message_link: str = ""

    def to_dict(self) -> dict[str, str]:
        # every field is a str: no deep copy (dataclasses.asdict) needed, and one is made per request
        return {field.name: getattr(self, field.name) for field in fields(self)}
