"""DiscordStub: the test-facing object that runs the server and plays the users."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import mimetypes
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import payloads
from .gateway import Gateway
from .records import CommandSync, Interaction, Recorder, RestRequest, Sent, UploadedFile
from .rest import API, RestApi
from .state import StubState

APP_ID = "1111111111111111111"
GUILD_ID = "2222222222222222222"
CHANNEL_ID = "3333333333333333333"
USER_ID = "4444444444444444444"
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
MAX_UPLOAD = 64 * 1024 * 1024  # aiohttp's default 1 MiB request limit would refuse real image uploads

Options = Mapping[str, Any] | Sequence[Mapping[str, Any]]
MODAL, TEXT_INPUT = 9, 4  # the callback that opens a modal; a text input inside one
MESSAGE_COMMAND = 3  # an application command run from a message's context menu


class DiscordStub:
    """A loopback Discord (REST + gateway) for the real discord.py client, on 127.0.0.1 only.

    One guild with one text channel ("general"), an @everyone role plus `roles` (name -> permission
    bits), and a default user who invokes commands. `token`, when given, is checked like Discord
    does (401 on REST, close 4004 on IDENTIFY). `ack_deadline` (seconds), when given, makes late
    interaction callbacks fail with "Unknown interaction" as on Discord (3 s there).
    """

    def __init__(
        self,
        *,
        app_id: str | int = APP_ID,
        bot_user_id: str | int | None = None,
        guild_id: str | int = GUILD_ID,
        channel_id: str | int = CHANNEL_ID,
        user_id: str | int = USER_ID,
        roles: Mapping[str, int] = {},
        token: str | None = None,
        ack_deadline: float | None = None,
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        self._state = StubState(
            app_id=str(app_id),
            bot_user_id=str(bot_user_id or app_id),  # a bot's user id is its application id on Discord
            guild_id=str(guild_id),
            channel_id=str(channel_id),
            user_id=str(user_id),
            roles=roles,
            token=token,
        )
        self._rest = RestApi(self._state, ack_deadline=ack_deadline)
        self._gateway = Gateway(self._state, heartbeat_interval_ms=heartbeat_interval_ms)
        self._runner: web.AppRunner | None = None
        self.interactions: list[Interaction] = []  # every interaction dispatched, in order

    # lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._rest.middleware], client_max_size=MAX_UPLOAD)
        app.router.add_get("/gateway", self._gateway.handle)
        app.add_routes(self._rest.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        # Loopback only, a free port. The backlog takes a burst of 200 new connections at once: with
        # aiohttp's 128 the kernel drops the rest's SYNs, retried after 1 s, a wait Discord never adds.
        await web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024).start()
        port = self._runner.addresses[0][1]
        self._state.http_base = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop serving. Close the bot first, or discord.py will keep trying to reconnect."""
        if self._runner is not None:
            await self._gateway.close()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordStub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # where the bot should connect

    @property
    def http_base(self) -> str:
        if not self._state.http_base:
            raise RuntimeError("the stub is not started")
        return self._state.http_base

    @property
    def api_base(self) -> str:
        """What `discord.http.Route.BASE` must be, e.g. http://127.0.0.1:PORT/api/v10."""
        return self.http_base + API

    @property
    def gateway_url(self) -> str:
        """What `DiscordWebSocket.DEFAULT_GATEWAY` must be (as a yarl.URL): ws://127.0.0.1:PORT/gateway."""
        return self.http_base.replace("http://", "ws://", 1) + "/gateway"

    def bot_env(self) -> dict[str, str]:
        """Environment variables that point a `python -m bot` subprocess here."""
        return {"DISCORD_API_BASE": self.api_base, "DISCORD_GATEWAY_URL": self.gateway_url}

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until a bot has IDENTIFYed (or resumed) and got READY and the test guild's GUILD_CREATE."""
        try:
            await asyncio.wait_for(self._gateway.ready.wait(), timeout)
        except TimeoutError:
            seen = [f"{r.method} {r.path} -> {r.status}" for r in self.requests]
            raise TimeoutError(f"no bot connected within {timeout}s; REST requests so far: {seen}") from None

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the bot's gateway socket with a resumable code; discord.py reconnects and RESUMEs."""
        await self._gateway.drop(code)

    # what was recorded

    @property
    def requests(self) -> Recorder[RestRequest]:
        """Every REST request under the API base: method, path (relative to it), query, time, status."""
        return self._state.requests

    @property
    def messages(self) -> Recorder[Sent]:
        """Channel messages the bot created, edited or deleted through /channels/{id}/messages."""
        return self._state.messages

    @property
    def command_syncs(self) -> Recorder[CommandSync]:
        return self._state.command_syncs

    @property
    def gateway_frames(self) -> Recorder[dict[str, Any]]:
        """Every frame the bot sent on the gateway (heartbeats, IDENTIFY, presence updates...)."""
        return self._gateway.received

    def commands(self, guild_id: str | int | None = None) -> list[dict[str, Any]]:
        """The commands registered by the last sync of a guild (None: global), with their ids."""
        return list(self._state.commands.get(None if guild_id is None else str(guild_id), {}).values())

    def message(self, message_id: str | int) -> dict[str, Any]:
        """The current state of any message the bot posted (channel, response or follow-up)."""
        return self._state.stored[str(message_id)]

    def uploaded(self, attachment_id: str | int) -> UploadedFile:
        return self._state.uploads[str(attachment_id)]

    # the guild

    @property
    def app_id(self) -> str:
        return self._state.app_id

    @property
    def guild_id(self) -> str:
        return self._state.guild_id

    @property
    def channel_id(self) -> str:
        return self._state.channel_id

    @property
    def user_id(self) -> str:
        return self._state.user_id

    def role_id(self, name: str) -> str:
        return self._state.role_id(name)

    def add_text_channel(self, name: str) -> str:
        """Add a channel to the guild; call before the bot connects so its GUILD_CREATE lists it."""
        return self._state.add_text_channel(name)

    # playing the user

    async def slash_command(
        self,
        name: str,
        options: Options = (),
        *,
        user_id: str | int | None = None,
        roles: Iterable[str | int] = (),
        permissions: int = 0,
        guild_id: str | int | None = None,
        channel_id: str | int | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        """Invoke /name and return at once with a handle on the interaction.

        `options`: {name: value}, the type inferred (bool 5, int 4, float 10, str 3, bytes or an
        UploadedFile 11 = an attachment served by the stub and listed in data.resolved.attachments),
        or a list of option dicts ({"name", "type", "value"}, or {"name", "type": 1, "options": [...]}
        for a subcommand). A channel option ({"name", "type": 7, "value": channel_id}) names one of the
        guild's channels, listed in data.resolved.channels as Discord does. `roles` are role names or ids; `permissions` the member's permission bits.
        The command's id (and guild_id, for a guild command) come from the bot's last sync; an
        unsynced name is sent as a global command with a fresh id.
        """
        data = self._command_data(name, options, guild_id)
        who = self._invoker(user_id, roles, permissions, guild_id, channel_id, locale)
        return await self._dispatch(2, data, who)

    async def autocomplete(
        self,
        name: str,
        options: Options,
        *,
        focused: str,
        user_id: str | int | None = None,
        roles: Iterable[str | int] = (),
        permissions: int = 0,
        guild_id: str | int | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        """An autocomplete request (type 4) while the user types option `focused`; the bot answers
        with a type 8 callback whose data.choices are the suggestions."""
        data = self._command_data(name, options, guild_id)
        _mark_focused(data.get("options", []), focused)
        who = self._invoker(user_id, roles, permissions, guild_id, None, locale)
        return await self._dispatch(4, data, who)

    async def click(
        self,
        message_id: str | int,
        custom_id: str,
        *,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        user_id: str | int | None = None,
        roles: Iterable[str | int] = (),
        permissions: int = 0,
        locale: str = "en-US",
    ) -> Interaction:
        """Click a button (component_type 2) or pick `values` in a select (3) on a message the bot posted."""
        message = self._state.stored.get(str(message_id))
        if message is None:
            raise KeyError(f"the bot posted no message {message_id} (or deleted it)")
        available = list(_custom_ids(message["components"]))
        if custom_id not in available:
            raise ValueError(f"message {message_id} has no component {custom_id!r}; it has {available}")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        who = self._invoker(user_id, roles, permissions, None, message["channel_id"], locale)
        return await self._dispatch(3, data, who, message=message)

    async def message_command(
        self,
        name: str,
        message_id: str | int,
        *,
        user_id: str | int | None = None,
        roles: Iterable[str | int] = (),
        permissions: int = 0,
        locale: str = "en-US",
    ) -> Interaction:
        """Use the message context menu `name` (Apps › name) on a message the bot posted: an application
        command of type 3 whose data names the message (`target_id`) and carries it in resolved.messages."""
        message = self._state.stored.get(str(message_id))
        if message is None:
            raise KeyError(f"the bot posted no message {message_id} (or deleted it)")
        command = self._state.find_command(name, self.guild_id) or {}
        data: dict[str, Any] = {
            "id": command.get("id") or self._state.ids.next(), "name": name, "type": MESSAGE_COMMAND,
            "target_id": message["id"], "resolved": {"messages": {message["id"]: message}},
        }
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        who = self._invoker(user_id, roles, permissions, None, message["channel_id"], locale)
        return await self._dispatch(2, data, who)

    async def submit_modal(
        self,
        opened: Interaction,
        values: Mapping[str, str] = {},
        *,
        user_id: str | int | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        """Submit the form (modal) the bot opened in answer to `opened` (a type 9 callback): each text
        input keeps its prefilled value unless `values` (custom_id -> text) changes it. Dispatched as a
        modal submit (type 5) by the member who opened it, unless `user_id` says otherwise."""
        callback = next((s for s in opened.responses if s.callback_type == MODAL), None)
        if callback is None:
            raise ValueError(f"{opened!r} opened no modal")
        modal = callback.data
        unknown = set(values) - set(_custom_ids(modal["components"]))
        if unknown:
            raise ValueError(f"the modal has no input {sorted(unknown)}")
        rows = [
            {"type": 1, "components": [
                {"type": TEXT_INPUT, "custom_id": field["custom_id"],
                 "value": values.get(field["custom_id"], field.get("value") or "")}
                for field in row["components"]
            ]}
            for row in modal["components"]
        ]
        data = {"custom_id": modal["custom_id"], "components": rows}
        original = opened.payload
        who = self._invoker(user_id or original["member"]["user"]["id"], (), int(original["member"]["permissions"]),
                            original["guild_id"], original["channel_id"], locale)
        message = self._state.stored.get(opened.original_message_id or "") if "message" in original else None
        return await self._dispatch(5, data, who, message=message)

    def _command_data(self, name: str, options: Options, guild_id: str | int | None) -> dict[str, Any]:
        command = self._state.find_command(name, str(guild_id or self.guild_id)) or {}
        data: dict[str, Any] = {"id": command.get("id") or self._state.ids.next(), "name": name, "type": 1}
        if "guild_id" in command:  # discord.py looks guild commands up only when this is present
            data["guild_id"] = command["guild_id"]
        resolved: dict[str, dict[str, Any]] = {}  # "attachments" / "channels" -> id -> object
        entries = options
        if isinstance(options, Mapping):
            entries = [{"name": name, "value": value} for name, value in options.items()]
        built = [self._option(entry, resolved) for entry in entries]
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        return data

    def _option(self, entry: Mapping[str, Any], resolved: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if "options" in entry:  # a subcommand (1) or group (2)
            nested = [self._option(o, resolved) for o in entry["options"]]
            return {"type": payloads.SUB_COMMAND, **entry, "options": nested}
        value = entry["value"]
        if isinstance(value, (bytes, bytearray, UploadedFile)):
            attachment = self._state.store_upload(_as_upload(entry["name"], value), ephemeral=True)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            return {**entry, "type": payloads.ATTACHMENT, "value": attachment["id"]}
        if entry.get("type") == payloads.CHANNEL:
            channel = self._state.channels[str(value)]
            partial = {**channel, "permissions": str(payloads.ALL_PERMISSIONS)}
            resolved.setdefault("channels", {})[str(value)] = partial
            return {**entry, "value": str(value)}
        return {**entry, "type": entry.get("type") or payloads.infer_option_type(value)}

    def _invoker(
        self,
        user_id: str | int | None,
        roles: Iterable[str | int],
        permissions: int,
        guild_id: str | int | None,
        channel_id: str | int | None,
        locale: str,
    ) -> _Invoker:
        state = self._state
        return _Invoker(
            user_id=str(user_id or state.user_id),
            role_ids=tuple(state.role_id(r) for r in roles),
            permissions=permissions,
            guild_id=str(guild_id or state.guild_id),
            channel_id=str(channel_id or state.channel_id),
            locale=locale,
        )

    async def _dispatch(
        self,
        interaction_type: int,
        data: dict[str, Any],
        who: _Invoker,
        *,
        message: dict[str, Any] | None = None,
    ) -> Interaction:
        payload = self._interaction_payload(interaction_type, data, who)
        if message is not None:
            payload["message"] = message
        interaction = Interaction(payload, original_message_id=message and message["id"])
        # Registered before sending: the bot may answer before dispatch() returns.
        self._state.register(interaction)
        self.interactions.append(interaction)
        stamp = functools.partial(setattr, interaction, "sent_at")
        await self._gateway.dispatch("INTERACTION_CREATE", payload, stamp=stamp)
        return interaction

    def _interaction_payload(
        self, interaction_type: int, data: dict[str, Any], who: _Invoker
    ) -> dict[str, Any]:
        state = self._state
        user = state.owner
        if who.user_id != state.user_id:
            user = payloads.user(who.user_id, f"user{who.user_id}")
        channel = state.channels.get(who.channel_id)
        if channel is None:  # a channel the guild does not list: discord.py builds it from this payload
            channel = payloads.text_channel(who.channel_id, who.guild_id, "unknown")
        return {
            "id": state.ids.next(),
            "application_id": state.app_id,
            "type": interaction_type,
            "data": data,
            "guild_id": who.guild_id,
            "guild": {"id": who.guild_id, "locale": "en-US", "features": []},
            "channel_id": who.channel_id,
            "channel": {**channel, "permissions": str(who.permissions)},
            "member": payloads.member(user, who.role_ids, permissions=who.permissions),
            "token": "stub-" + secrets.token_urlsafe(32),
            "version": 1,
            "locale": who.locale,
            "guild_locale": "en-US",
            "app_permissions": str(payloads.ALL_PERMISSIONS),
            "entitlements": [],
            "authorizing_integration_owners": {"0": who.guild_id},
            "context": 0,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }


@dataclass(frozen=True)
class _Invoker:
    """Who triggers an interaction, and where."""

    user_id: str
    role_ids: tuple[str, ...]
    permissions: int
    guild_id: str
    channel_id: str
    locale: str


def _as_upload(option_name: str, value: bytes | bytearray | UploadedFile) -> UploadedFile:
    if isinstance(value, UploadedFile):
        return value
    data = bytes(value)
    content_type = payloads.guess_content_type("", data)
    extension = mimetypes.guess_extension(content_type) or ".bin"
    return UploadedFile(f"{option_name}{extension}", data, content_type)


def _mark_focused(options: list[dict[str, Any]], focused: str) -> None:
    for option in options:
        if option["name"] == focused and "value" in option:
            option["focused"] = True
            return
        _mark_focused(option.get("options", []), focused)


def _custom_ids(components: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Every custom_id in a message's components, however deeply nested (rows, containers, labels)."""
    for component in components:
        if "custom_id" in component:
            yield component["custom_id"]
        yield from _custom_ids(component.get("components", []))
        if "component" in component:
            yield from _custom_ids([component["component"]])
        if "accessory" in component:
            yield from _custom_ids([component["accessory"]])


@contextlib.contextmanager
def discord_py_pointed_at(stub: DiscordStub) -> Iterator[None]:
    """Point this process's discord.py at the stub (for a bot run in-process), restoring on exit.

    A plain Client connects to DiscordWebSocket.DEFAULT_GATEWAY (only AutoShardedClient asks
    GET /gateway/bot), and it must be a yarl.URL: discord.py calls .with_query() on it.
    """
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = stub.api_base, yarl.URL(stub.gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
