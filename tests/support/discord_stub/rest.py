"""The REST half of the stub: the routes discord.py 2.7 calls, answered like Discord does.

Errors use Discord's JSON shape ({"message", "code"}) and codes, so discord.py raises the same
exceptions it would against Discord. Unknown routes answer 404 and are logged, so a missing piece
shows up instead of hanging.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import payloads
from .records import Interaction, RestRequest, Sent, UploadedFile
from .state import StubState

API = "/api/v10"
FILE_FIELD = re.compile(r"files\[(\d+)\]")
# Routes a bot token must authorize; interaction callbacks and webhooks are authorized by their token.
TOKEN_FREE = re.compile(rf"{API}/(interactions|webhooks)/")

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadBody(Exception):
    """The request body was not the JSON (or multipart) Discord expects."""


def json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": with "; charset=utf-8" discord.py reads the body as text.
    headers = {"Content-Type": "application/json"}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers)


def error(status: int, code: int, message: str) -> web.Response:
    return json_response({"message": message, "code": code}, status=status)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


async def read_body(request: web.Request) -> tuple[Any, dict[int, UploadedFile]]:
    """The JSON body and the files: a multipart body carries payload_json plus files[n] parts."""
    try:
        if request.content_type.startswith("multipart/"):
            return await _read_multipart(request)
        raw = await request.read()
        return (json.loads(raw) if raw else {}), {}
    except ValueError as exc:
        raise BadBody(str(exc)) from exc


async def _read_multipart(request: web.Request) -> tuple[dict[str, Any], dict[int, UploadedFile]]:
    body: dict[str, Any] = {}
    files: dict[int, UploadedFile] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if part.name == "payload_json":
            body = json.loads(await part.text())
        elif match := FILE_FIELD.fullmatch(part.name or ""):
            data = bytes(await part.read())
            filename = part.filename or f"file{match[1]}"
            files[int(match[1])] = UploadedFile(filename, data, payloads.guess_content_type(filename, data))
    return body, files


def _callback_response(
    interaction: Interaction, body: dict[str, Any], message: dict[str, Any] | None
) -> dict[str, Any]:
    """The answer to a callback ?with_response=true; discord.py reads response_message_id from it to
    bind a view to the new message."""
    summary: dict[str, Any] = {"id": interaction.id, "type": interaction.type}
    response: dict[str, Any] = {"interaction": summary}
    if message is not None:
        summary["response_message_id"] = message["id"]
        summary["response_message_loading"] = bool(message["flags"] & payloads.LOADING)
        summary["response_message_ephemeral"] = bool(message["flags"] & payloads.EPHEMERAL)
        response["resource"] = {"type": body["type"], "message": message}
    return response


class RestApi:
    def __init__(self, state: StubState, *, ack_deadline: float | None) -> None:
        self.state = state
        self.ack_deadline = ack_deadline

    def routes(self) -> list[web.RouteDef]:
        get, post, put, patch, delete = web.get, web.post, web.put, web.patch, web.delete
        webhook_message = f"{API}/webhooks/{{app_id}}/{{token}}/messages/{{message_id}}"
        channel_message = f"{API}/channels/{{channel_id}}/messages/{{message_id}}"
        return [
            get(f"{API}/users/@me", self.me),
            get(f"{API}/oauth2/applications/@me", self.application),
            get(f"{API}/applications/@me", self.application),
            get(f"{API}/gateway", self.gateway),
            get(f"{API}/gateway/bot", self.gateway),
            post(f"{API}/users/@me/channels", self.open_dm),
            get(f"{API}/guilds/{{guild_id}}", self.get_guild),
            post(f"{API}/interactions/{{interaction_id}}/{{token}}/callback", self.interaction_callback),
            post(f"{API}/webhooks/{{app_id}}/{{token}}", self.followup),
            get(webhook_message, self.get_webhook_message),
            patch(webhook_message, self.edit_webhook_message),
            delete(webhook_message, self.delete_webhook_message),
            get(f"{API}/channels/{{channel_id}}", self.get_channel),
            post(f"{API}/channels/{{channel_id}}/typing", self.no_content),
            get(f"{API}/channels/{{channel_id}}/messages", self.channel_history),
            post(f"{API}/channels/{{channel_id}}/messages", self.create_channel_message),
            get(channel_message, self.get_channel_message),
            patch(channel_message, self.edit_channel_message),
            delete(channel_message, self.delete_channel_message),
            get(f"{API}/applications/{{app_id}}/commands", self.get_commands),
            put(f"{API}/applications/{{app_id}}/commands", self.put_commands),
            get(f"{API}/applications/{{app_id}}/guilds/{{guild_id}}/commands", self.get_commands),
            put(f"{API}/applications/{{app_id}}/guilds/{{guild_id}}/commands", self.put_commands),
            get("/attachments/{attachment_id}/{filename}", self.attachment_bytes),
            web.route("*", "/{tail:.*}", self.unknown_route),  # last: everything else
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authorize, answer stub bugs and bad bodies Discord-style, and log every API request."""
        if not request.path.startswith(API + "/"):
            return await handler(request)  # the gateway and attachment downloads
        at = time.monotonic()
        try:
            response = await self._authorized(request, handler)
        except BadBody as exc:
            response = error(400, 50109, f"The request body contains invalid JSON. ({exc})")
        except Exception:
            log.exception("discord stub failed on %s %s", request.method, request.path)
            response = error(500, 0, "500: Internal Server Error (discord stub bug; see the log)")
        path = request.path[len(API) :]
        logged = RestRequest(request.method, path, dict(request.query), at, response.status)
        self.state.requests.append(logged)
        return response

    async def _authorized(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.state.token
        if token is None or TOKEN_FREE.match(request.path):
            return await handler(request)
        if request.headers.get("Authorization") != f"Bot {token}":
            return error(401, 0, "401: Unauthorized")
        return await handler(request)

    # login and identity

    async def me(self, request: web.Request) -> web.Response:
        return json_response(self.state.bot_user)

    async def application(self, request: web.Request) -> web.Response:
        return json_response(payloads.application(self.state.app_id, self.state.owner))

    async def gateway(self, request: web.Request) -> web.Response:
        url = str(request.url.with_scheme("ws").with_path("/gateway").with_query(None))
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": url, "shards": 1, "session_start_limit": limit})

    async def open_dm(self, request: web.Request) -> web.Response:
        body, _ = await read_body(request)
        return json_response(self.state.open_dm(str(body["recipient_id"])))

    async def get_guild(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] != self.state.guild_id:
            return error(404, 10004, "Unknown Guild")
        guild = self.state.guild_payload()
        for gateway_only in ("members", "channels", "threads", "presences", "voice_states", "joined_at"):
            guild.pop(gateway_only)
        return json_response(guild)

    async def no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def unknown_route(self, request: web.Request) -> web.Response:
        log.warning("discord stub: no route for %s %s", request.method, request.path)
        return error(404, 0, f"404: Not Found (the stub has no route for {request.method} {request.path})")

    # interactions

    async def interaction_callback(self, request: web.Request) -> web.Response:
        interaction = self.state.interactions.get(request.match_info["interaction_id"])
        if interaction is None or interaction.token != request.match_info["token"]:
            return error(404, 10062, "Unknown interaction")
        body, files = await read_body(request)
        at = time.monotonic()
        # No await between this check and the append below: two racing callbacks cannot both pass.
        if interaction.acked:
            return error(400, 40060, "Interaction has already been acknowledged.")
        if self.ack_deadline is not None and at - interaction.sent_at > self.ack_deadline:
            return error(404, 10062, "Unknown interaction")  # what Discord answers after its 3 s window
        message = self._apply_callback(interaction, body, files)
        interaction.responses.append(Sent("callback", at, body, tuple(files.values()), message))
        if not _truthy(request.query.get("with_response")):
            return web.Response(status=204)
        return json_response(_callback_response(interaction, body, message))

    def _apply_callback(
        self, interaction: Interaction, body: dict[str, Any], files: dict[int, UploadedFile]
    ) -> dict[str, Any] | None:
        """Create or edit the message a callback names: 4 message, 5 deferred ("thinking"), 7 update."""
        callback_type, data = body.get("type"), body.get("data") or {}
        if callback_type == 4:
            return self._original_message(interaction, data, files)
        if callback_type == 5:
            loading = {"flags": int(data.get("flags") or 0) | payloads.LOADING}
            return self._original_message(interaction, loading, files)
        if callback_type == 7 and interaction.original_message_id in self.state.stored:
            return self.state.edit_message(interaction.original_message_id, data, files)
        return None  # 6 (deferred update), 8 (autocomplete), 9 (modal): no message

    def _original_message(
        self, interaction: Interaction, data: dict[str, Any], files: dict[int, UploadedFile]
    ) -> dict[str, Any]:
        message = self._interaction_message(interaction, data, files)
        interaction.original_message_id = message["id"]
        return message

    def _interaction_message(
        self, interaction: Interaction, data: dict[str, Any], files: dict[int, UploadedFile]
    ) -> dict[str, Any]:
        payload = interaction.payload
        message_type = payloads.CHAT_INPUT_COMMAND if interaction.type == 2 else payloads.DEFAULT_MESSAGE
        metadata = {
            "id": interaction.id,
            "type": interaction.type,
            "user": payload["member"]["user"],
            "authorizing_integration_owners": {"0": self.state.guild_id},
        }
        app_id = self.state.app_id
        extra = {"webhook_id": app_id, "application_id": app_id, "interaction_metadata": metadata}
        channel_id = payload["channel_id"]
        return self.state.create_message(channel_id, data, files, message_type=message_type, extra=extra)

    # follow-ups and edits through the interaction webhook

    def _webhook_interaction(self, request: web.Request) -> Interaction | None:
        if request.match_info["app_id"] != self.state.app_id:
            return None
        return self.state.by_token.get(request.match_info["token"])

    async def followup(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        if interaction is None or not interaction.acked:  # Discord: no follow-up before the ack
            return error(404, 10015, "Unknown Webhook")
        body, files = await read_body(request)
        at = time.monotonic()
        message = self._interaction_message(interaction, body, files)
        interaction.responses.append(Sent("followup", at, body, tuple(files.values()), message))
        return json_response(message) if _truthy(request.query.get("wait")) else web.Response(status=204)

    def _webhook_target(self, request: web.Request) -> tuple[Interaction, str] | web.Response:
        interaction = self._webhook_interaction(request)
        if interaction is None:
            return error(404, 10015, "Unknown Webhook")
        message_id = request.match_info["message_id"]
        if message_id == "@original":
            message_id = interaction.original_message_id or ""
        if message_id not in self.state.stored:
            return error(404, 10008, "Unknown Message")
        return interaction, message_id

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        target = self._webhook_target(request)
        if isinstance(target, web.Response):
            return target
        return json_response(self.state.stored[target[1]])

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        target = self._webhook_target(request)
        if isinstance(target, web.Response):
            return target
        interaction, message_id = target
        body, files = await read_body(request)
        at = time.monotonic()
        message = self.state.edit_message(message_id, body, files)
        interaction.responses.append(Sent("edit", at, body, tuple(files.values()), message))
        return json_response(message)

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        target = self._webhook_target(request)
        if isinstance(target, web.Response):
            return target
        interaction, message_id = target
        deleted = self.state.delete_message(message_id)
        interaction.responses.append(Sent("delete", time.monotonic(), {}, (), deleted))
        return web.Response(status=204)

    # channels and their messages

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self.state.channels.get(request.match_info["channel_id"])
        return json_response(channel) if channel else error(404, 10003, "Unknown Channel")

    async def channel_history(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        limit = int(request.query.get("limit", 50))
        newest_first = [m for m in reversed(self.state.stored.values()) if m["channel_id"] == channel_id]
        return json_response(newest_first[:limit])

    async def create_channel_message(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        if channel_id not in self.state.channels:
            return error(404, 10003, "Unknown Channel")
        body, files = await read_body(request)
        at = time.monotonic()
        extra = {key: body[key] for key in ("nonce", "message_reference") if key in body}
        message = self.state.create_message(channel_id, body, files, extra=extra)
        self.state.messages.append(Sent("create", at, body, tuple(files.values()), message))
        return json_response(message)

    def _channel_message_id(self, request: web.Request) -> str | None:
        message_id = request.match_info["message_id"]
        message = self.state.stored.get(message_id)
        if message is None or message["channel_id"] != request.match_info["channel_id"]:
            return None
        return message_id

    async def get_channel_message(self, request: web.Request) -> web.Response:
        message_id = self._channel_message_id(request)
        if message_id is None:
            return error(404, 10008, "Unknown Message")
        return json_response(self.state.stored[message_id])

    async def edit_channel_message(self, request: web.Request) -> web.Response:
        message_id = self._channel_message_id(request)
        if message_id is None:
            return error(404, 10008, "Unknown Message")
        body, files = await read_body(request)
        at = time.monotonic()
        message = self.state.edit_message(message_id, body, files)
        self.state.messages.append(Sent("edit", at, body, tuple(files.values()), message))
        return json_response(message)

    async def delete_channel_message(self, request: web.Request) -> web.Response:
        message_id = self._channel_message_id(request)
        if message_id is None:
            return error(404, 10008, "Unknown Message")
        deleted = self.state.delete_message(message_id)
        self.state.messages.append(Sent("delete", time.monotonic(), {}, (), deleted))
        return web.Response(status=204)

    # application commands

    def _command_scope(self, request: web.Request) -> str | None | web.Response:
        if request.match_info["app_id"] != self.state.app_id:
            return error(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is not None and guild_id != self.state.guild_id:
            return error(403, 50001, "Missing Access")
        return guild_id

    async def get_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        if isinstance(scope, web.Response):
            return scope
        return json_response(list(self.state.commands.get(scope, {}).values()))

    async def put_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        if isinstance(scope, web.Response):
            return scope
        body, _ = await read_body(request)
        return json_response(self.state.sync_commands(scope, body, time.monotonic()))

    # uploaded bytes, served back so a bot can download what a user attached

    async def attachment_bytes(self, request: web.Request) -> web.Response:
        file = self.state.uploads.get(request.match_info["attachment_id"])
        if file is None:
            return web.Response(status=404, text="This content is no longer available.")
        return web.Response(body=file.data, headers={"Content-Type": file.content_type})
