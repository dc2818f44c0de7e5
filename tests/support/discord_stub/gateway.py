"""The gateway half of the stub: one bot session over an aiohttp websocket.

Frames go out as plain JSON text even though discord.py asks for zlib-stream: it decompresses
only binary frames and parses text frames as they are.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from .records import Recorder
from .state import StubState

DISPATCH, HEARTBEAT, IDENTIFY, RESUME, REQUEST_MEMBERS = 0, 1, 2, 6, 8
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11
AUTHENTICATION_FAILED = 4004
Stamp = Callable[[float], None]


class Gateway:
    def __init__(self, state: StubState, *, heartbeat_interval_ms: int) -> None:
        self.state = state
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.received: Recorder[dict[str, Any]] = Recorder()  # every frame the bot sent
        self.ready = asyncio.Event()  # set once READY and GUILD_CREATE are out
        self._session: web.WebSocketResponse | None = None  # the identified socket
        self._sockets: set[web.WebSocketResponse] = set()
        self._session_id: str | None = None
        self._seq = 0
        self._send_lock = asyncio.Lock()  # sequence numbers must go out in order

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # A short close-handshake timeout: close() must not hang on a bot that stopped answering.
        ws = web.WebSocketResponse(max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            hello = {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
            await ws.send_str(json.dumps(hello))
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(ws, request, json.loads(msg.data))
        finally:
            self._sockets.discard(ws)
            if self._session is ws:
                self._session = None
                self.ready.clear()
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, request: web.Request, frame: dict[str, Any]) -> None:
        self.received.append(frame)
        op, data = frame.get("op"), frame.get("d")
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
        elif op == IDENTIFY:
            await self._identify(ws, request, data)
        elif op == RESUME:
            await self._resume(ws, data)
        elif op == REQUEST_MEMBERS:
            chunk = {"guild_id": self.state.guild_id, "members": [self.state.bot_member()], "chunk_index": 0,
                     "chunk_count": 1, "not_found": [], "nonce": data.get("nonce")}  # fmt: skip
            await self._dispatch_on(ws, "GUILD_MEMBERS_CHUNK", chunk)
        # Presence (3) and voice (4) updates need no answer.

    async def _identify(self, ws: web.WebSocketResponse, request: web.Request, data: dict[str, Any]) -> None:
        token = self.state.token
        if token is not None and data.get("token") != token:
            await ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        self._session, self._session_id, self._seq = ws, secrets.token_hex(16), 0
        await self._dispatch_on(ws, "READY", self._ready_payload(request, data))
        # Right after READY, as Discord does; discord.py still waits guild_ready_timeout after
        # the last GUILD_CREATE before on_ready, but interactions are handled meanwhile.
        await self._dispatch_on(ws, "GUILD_CREATE", self.state.guild_payload())
        self.ready.set()

    def _ready_payload(self, request: web.Request, identify: dict[str, Any]) -> dict[str, Any]:
        payload = {
            "v": 10,
            "user": {**self.state.bot_user, "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": self.state.guild_id, "unavailable": True}],
            "session_id": self._session_id,
            "session_type": "normal",
            "resume_gateway_url": str(request.url.with_query(None)),
            "application": {"id": self.state.app_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "user_settings": {},
        }
        if "shard" in identify:
            payload["shard"] = identify["shard"]
        return payload

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        """Accept a resume of the current session (missed events are not replayed)."""
        if data.get("session_id") != self._session_id:
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return
        self._session = ws
        await self._dispatch_on(ws, "RESUMED", {})
        self.ready.set()

    async def dispatch(self, event: str, data: dict[str, Any], *, stamp: Stamp | None = None) -> float:
        """Send an event to the connected bot; returns (and passes to `stamp`, before any await that
        could let the bot answer) the time.monotonic() just before the frame was written."""
        ws = self._session
        if ws is None or ws.closed:
            raise RuntimeError("no bot is connected to the stub's gateway; await stub.wait_connected() first")
        return await self._dispatch_on(ws, event, data, stamp=stamp)

    async def _dispatch_on(
        self, ws: web.WebSocketResponse, event: str, data: dict[str, Any], *, stamp: Stamp | None = None
    ) -> float:
        async with self._send_lock:
            self._seq += 1
            frame = json.dumps({"op": DISPATCH, "t": event, "s": self._seq, "d": data})
            sent_at = time.monotonic()
            if stamp is not None:
                stamp(sent_at)
            await ws.send_str(frame)
        return sent_at

    async def drop(self, code: int) -> None:
        """Close the bot's socket as Discord does when it wants a reconnect; discord.py resumes."""
        if self._session is not None:
            await self._session.close(code=code)

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"stub closing")
