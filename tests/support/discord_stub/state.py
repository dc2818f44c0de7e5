"""The stub's model of Discord: one guild, its channels and roles, messages, uploads, interactions, commands.

Shared by the REST side (which changes it as the bot asks) and the test-facing DiscordStub.
Message objects are never mutated once stored: an edit stores a new dict, so every recorded
`Sent.message` stays a faithful snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from . import payloads
from .records import CommandSync, Interaction, Recorder, RestRequest, Sent, UploadedFile

EDITABLE_FIELDS = ("content", "embeds", "components", "flags")


class StubState:
    def __init__(
        self,
        *,
        app_id: str,
        bot_user_id: str,
        guild_id: str,
        channel_id: str,
        user_id: str,
        roles: Mapping[str, int],
        token: str | None,
    ) -> None:
        self.ids = payloads.Snowflakes()
        self.app_id, self.guild_id, self.channel_id, self.user_id = app_id, guild_id, channel_id, user_id
        self.token = token
        self.bot_user = payloads.user(bot_user_id, "stable-qwerty", bot=True)
        self.owner = payloads.user(user_id, "tester")
        self.http_base = ""  # set once the server listens; attachment URLs point here
        self.roles = self._make_roles(roles)
        self.channels = {channel_id: payloads.text_channel(channel_id, guild_id, "general")}
        self.stored: dict[str, dict[str, Any]] = {}  # message id -> current message object
        self.uploads: dict[str, UploadedFile] = {}  # attachment id -> bytes served at /attachments/
        self.interactions: dict[str, Interaction] = {}  # by interaction id
        self.by_token: dict[str, Interaction] = {}
        # guild id (None: global) -> command name -> the command as registered
        self.commands: dict[str | None, dict[str, dict[str, Any]]] = {}
        self.requests: Recorder[RestRequest] = Recorder()
        self.messages: Recorder[Sent] = Recorder()
        self.command_syncs: Recorder[CommandSync] = Recorder()

    def _make_roles(self, roles: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        # @everyone's id is the guild's id, as on Discord.
        made = {self.guild_id: payloads.role(self.guild_id, "@everyone", permissions=0, position=0)}
        for position, (name, permissions) in enumerate(roles.items(), start=1):
            role_id = self.ids.next()
            made[role_id] = payloads.role(role_id, name, permissions=permissions, position=position)
        return made

    def role_id(self, name_or_id: str | int) -> str:
        """A role's id from its name or id."""
        key = str(name_or_id)
        if key in self.roles:
            return key
        for role_id, role in self.roles.items():
            if role["name"] == key:
                return role_id
        raise KeyError(f"no role {key!r}; known: {[r['name'] for r in self.roles.values()]}")

    def bot_member(self) -> dict[str, Any]:
        return payloads.member(self.bot_user, [])

    def guild_payload(self) -> dict[str, Any]:
        guild_channels = [c for c in self.channels.values() if c.get("guild_id") == self.guild_id]
        return payloads.guild(
            self.guild_id,
            owner_id=self.user_id,
            roles=list(self.roles.values()),
            channels=guild_channels,
            members=[self.bot_member()],
        )

    def add_text_channel(self, name: str) -> str:
        channel_id = self.ids.next()
        position = len(self.channels)
        self.channels[channel_id] = payloads.text_channel(channel_id, self.guild_id, name, position=position)
        return channel_id

    def open_dm(self, recipient_id: str) -> dict[str, Any]:
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == recipient_id:
                return channel
        channel_id = self.ids.next()
        recipient = payloads.user(recipient_id, f"user{recipient_id}")
        self.channels[channel_id] = payloads.dm_channel(channel_id, recipient)
        return self.channels[channel_id]

    # uploads and messages

    def store_upload(
        self, file: UploadedFile, *, ephemeral: bool = False, description: str | None = None
    ) -> dict[str, Any]:
        """Keep the bytes and return an attachment object whose URL serves them back."""
        attachment_id = self.ids.next()
        self.uploads[attachment_id] = file
        url = f"{self.http_base}/attachments/{attachment_id}/{quote(file.filename)}"
        return payloads.attachment(
            attachment_id, file.filename, file.data, url=url, description=description, ephemeral=ephemeral
        )

    def create_message(
        self,
        channel_id: str,
        body: Mapping[str, Any],
        files: Mapping[int, UploadedFile],
        *,
        message_type: int = payloads.DEFAULT_MESSAGE,
        extra: Mapping[str, Any] = {},
    ) -> dict[str, Any]:
        attachments = self._attachments(body, files, existing=[])
        message_id = self.ids.next()
        created = payloads.message(
            message_id,
            channel_id,
            author=self.bot_user,
            body=body,
            attachments=attachments,
            message_type=message_type,
        )
        created.update(extra)
        self.stored[created["id"]] = created
        return created

    def edit_message(
        self, message_id: str, body: Mapping[str, Any], files: Mapping[int, UploadedFile]
    ) -> dict[str, Any]:
        old = self.stored[message_id]
        edited = {**old, "edited_timestamp": payloads.iso_now()}
        for name in EDITABLE_FIELDS:
            if name in body:
                edited[name] = payloads.embeds(body[name]) if name == "embeds" else body[name]
        edited["content"] = edited["content"] or ""
        edited["components"] = edited["components"] or []
        # Ephemeral cannot be changed by an edit, and an edit ends the "thinking..." state.
        flags = int(edited["flags"] or 0) | (old["flags"] & payloads.EPHEMERAL)
        edited["flags"] = flags & ~payloads.LOADING
        if "attachments" in body or files:
            edited["attachments"] = self._attachments(body, files, existing=old["attachments"])
        self.stored[message_id] = edited
        return edited

    def delete_message(self, message_id: str) -> dict[str, Any]:
        return self.stored.pop(message_id)

    def _attachments(
        self, body: Mapping[str, Any], files: Mapping[int, UploadedFile], *, existing: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Attachments after a create/edit: body["attachments"] lists kept ones by id and new ones by
        the index n of their files[n] part; without that list, new files are appended."""
        ephemeral = bool(int(body.get("flags") or 0) & payloads.EPHEMERAL)
        entries = body.get("attachments")
        if entries is None:
            return existing + [self.store_upload(files[n], ephemeral=ephemeral) for n in sorted(files)]
        kept = {a["id"]: a for a in existing}
        result = []
        for entry in entries:
            key = str(entry.get("id"))
            if key in kept:
                result.append(kept[key])
            elif key.isdigit() and int(key) in files:
                renamed = files[int(key)]
                if entry.get("filename"):  # discord.py's spoiler=True renames here
                    renamed = UploadedFile(entry["filename"], renamed.data, renamed.content_type)
                description = entry.get("description")
                result.append(self.store_upload(renamed, ephemeral=ephemeral, description=description))
        return result

    # commands

    def sync_commands(
        self, guild_id: str | None, body: list[dict[str, Any]], at: float
    ) -> list[dict[str, Any]]:
        """Replace a scope's commands; a name keeps its id across syncs, as on Discord."""
        before = self.commands.get(guild_id, {})
        synced = {}
        for command in body:
            old_id = before.get(command["name"], {}).get("id")
            synced[command["name"]] = self._registered(command, old_id or self.ids.next(), guild_id)
        self.commands[guild_id] = synced
        self.command_syncs.append(CommandSync(guild_id, body, at))
        return list(synced.values())

    def _registered(
        self, command: Mapping[str, Any], command_id: str, guild_id: str | None
    ) -> dict[str, Any]:
        registered = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **command,
            "id": command_id,
            "application_id": self.app_id,
            "version": self.ids.next(),
        }
        if guild_id is not None:
            registered["guild_id"] = guild_id
        return registered

    def find_command(self, name: str, guild_id: str) -> dict[str, Any] | None:
        """The synced command an invocation refers to: the guild's first, then the global one."""
        return self.commands.get(guild_id, {}).get(name) or self.commands.get(None, {}).get(name)

    def register(self, interaction: Interaction) -> None:
        self.interactions[interaction.id] = interaction
        self.by_token[interaction.token] = interaction
