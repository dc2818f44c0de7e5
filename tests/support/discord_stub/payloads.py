"""JSON objects shaped like Discord API v10's, with the fields discord.py 2.7 reads.

Pure functions of their arguments (plus the clock): no stub state lives here.
"""

from __future__ import annotations

import mimetypes
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
# Every permission bit, so the bot is never refused by its own permissions.
ALL_PERMISSIONS = (1 << 53) - 1
EPHEMERAL = 1 << 6
LOADING = 1 << 7  # a deferred ("thinking") response message

# Option types of application commands.
SUB_COMMAND, STRING, INTEGER, BOOLEAN, CHANNEL, NUMBER, ATTACHMENT = 1, 3, 4, 5, 7, 10, 11
# Message types.
DEFAULT_MESSAGE, CHAT_INPUT_COMMAND = 0, 20


class Snowflakes:
    """Unique, time-ordered ids like Discord's (discord.py derives `created_at` from them)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(now, self._last + 1)
        return str(self._last)


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def user(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": name,
        "global_name": None if bot else name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
        "flags": 0,
    }


def role(role_id: str, name: str, *, permissions: int, position: int) -> dict[str, Any]:
    return {
        "id": role_id,
        "name": name,
        "color": 0,
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def text_channel(channel_id: str, guild_id: str, name: str, *, position: int = 0) -> dict[str, Any]:
    return {
        "id": channel_id,
        "type": 0,
        "guild_id": guild_id,
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def dm_channel(channel_id: str, recipient: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": channel_id, "type": 1, "last_message_id": None, "recipients": [dict(recipient)], "flags": 0}


def member(
    user_payload: Mapping[str, Any], role_ids: Iterable[str], *, permissions: int | None = None
) -> dict[str, Any]:
    payload = {
        "user": dict(user_payload),
        "roles": list(role_ids),
        "nick": None,
        "avatar": None,
        "joined_at": iso_now(),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
    }
    if permissions is not None:  # only interaction payloads carry the member's resolved permissions
        payload["permissions"] = str(permissions)
    return payload


def guild(
    guild_id: str,
    *,
    owner_id: str,
    roles: Sequence[Mapping[str, Any]],
    channels: Sequence[Mapping[str, Any]],
    members: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A full GUILD_CREATE body. member_count equals len(members) so discord.py treats it as chunked
    and never asks for member chunks."""
    return {
        "id": guild_id,
        "name": "Stable Qwerty test guild",
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": owner_id,
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [dict(r) for r in roles],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "max_members": 500_000,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "joined_at": iso_now(),
        "large": False,
        "unavailable": False,
        "member_count": len(members),
        "members": [dict(m) for m in members],
        "channels": [dict(c) for c in channels],
        "threads": [],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def application(app_id: str, owner: Mapping[str, Any]) -> dict[str, Any]:
    """GET /oauth2/applications/@me."""
    return {
        "id": app_id,
        "name": "Stable Qwerty (stub)",
        "description": "",
        "icon": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": dict(owner),
        "verify_key": "0" * 64,
        "team": None,
        "flags": 0,
        "summary": "",
        "rpc_origins": [],
        "interactions_endpoint_url": None,  # set, discord.py warns that it gets no interactions
        "tags": [],
    }


def guess_content_type(filename: str, data: bytes) -> str:
    """Discord sniffs the type; discord.py uploads everything as application/octet-stream."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _png_size(data: bytes) -> tuple[int, int] | tuple[None, None]:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None, None


def attachment(
    attachment_id: str,
    filename: str,
    data: bytes,
    *,
    url: str,
    description: str | None = None,
    ephemeral: bool = False,
) -> dict[str, Any]:
    width, height = _png_size(data)
    payload: dict[str, Any] = {
        "id": attachment_id,
        "filename": filename,
        "size": len(data),
        "url": url,
        "proxy_url": url,
        "content_type": guess_content_type(filename, data),
        "width": width,
        "height": height,
        "ephemeral": ephemeral,
    }
    if description is not None:
        payload["description"] = description
    return payload


def message(
    message_id: str,
    channel_id: str,
    *,
    author: Mapping[str, Any],
    body: Mapping[str, Any],
    attachments: list[dict[str, Any]],
    message_type: int = DEFAULT_MESSAGE,
) -> dict[str, Any]:
    """A message as Discord returns it after creating it from `body` (what the bot sent)."""
    return {
        "id": message_id,
        "channel_id": channel_id,
        "author": dict(author),
        "content": body.get("content") or "",
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "tts": bool(body.get("tts", False)),
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": attachments,
        "embeds": embeds(body.get("embeds")),
        "components": list(body.get("components") or []),
        "pinned": False,
        "type": message_type,
        "flags": int(body.get("flags") or 0),
    }


def embeds(sent: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    # Discord fills in the type of embeds a bot sends.
    return [{"type": "rich", **e} for e in sent or []]


def infer_option_type(value: Any) -> int:
    """The option type Discord would send for a Python value (bool before int: bool is an int)."""
    for python_type, option_type in ((bool, BOOLEAN), (int, INTEGER), (float, NUMBER), (str, STRING)):
        if isinstance(value, python_type):
            return option_type
    raise TypeError(f"cannot infer an option type for {value!r}; pass options as a list of dicts with 'type'")
