"""What the stub records: requests, messages, interaction answers; and lists a test can await."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from .payloads import EPHEMERAL

T = TypeVar("T")


class Recorder(Sequence[T], Generic[T]):
    """An append-only list that can be awaited.

    `wait_for` returns the first item matching, counting items recorded before the call too, so a
    test never races the bot; pass `since=len(recorder)` to look only at newer ones.
    """

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiters: list[tuple[Callable[[T], bool], asyncio.Future[T]]] = []

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"Recorder({self._items!r})"

    def append(self, item: T) -> None:
        self._items.append(item)
        waiting = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            if not _settle(future, predicate, item):
                waiting.append((predicate, future))
        self._waiters = waiting

    async def wait_for(
        self, predicate: Callable[[T], bool] = lambda _: True, *, timeout: float = 5.0, since: int = 0
    ) -> T:
        for item in self._items[since:]:
            if predicate(item):
                return item
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            recent = self._items[since:][-5:]
            raise TimeoutError(f"nothing matching within {timeout}s; latest recorded: {recent!r}") from None


def _settle(future: asyncio.Future[T], predicate: Callable[[T], bool], item: T) -> bool:
    """Resolve `future` with `item` if it matches; a failing predicate fails its waiter, not the recorder."""
    try:
        matched = predicate(item)
    except Exception as exc:  # noqa: BLE001 - handed to the test that wrote the predicate
        future.set_exception(exc)
        return True
    if matched:
        future.set_result(item)
    return matched


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot uploaded (or a test attached to an interaction)."""

    filename: str
    data: bytes
    content_type: str

    def __repr__(self) -> str:  # the bytes would drown every assertion message
        return f"UploadedFile({self.filename!r}, {len(self.data)} bytes, {self.content_type!r})"


@dataclass(frozen=True)
class RestRequest:
    method: str
    path: str  # relative to the API base, e.g. "/users/@me"
    query: dict[str, str]
    at: float  # time.monotonic() on arrival
    status: int


@dataclass(frozen=True)
class CommandSync:
    """A bulk overwrite of application commands (what `tree.sync()` sends)."""

    guild_id: str | None  # None for a global sync
    commands: list[dict[str, Any]]  # the request body
    at: float


@dataclass(frozen=True)
class Sent:
    """One thing the bot sent.

    kind: "callback" (POST /interactions/.../callback), "followup" (POST /webhooks/...), "edit" and
    "delete" (of a webhook or channel message), "create" (POST /channels/{id}/messages).
    """

    kind: str
    at: float  # time.monotonic() when the stub received it
    payload: dict[str, Any]  # the JSON body, or the payload_json part of a multipart body; {} for deletes
    files: tuple[UploadedFile, ...]
    message: dict[str, Any] | None  # the message object the stub answered with (or deleted)

    @property
    def callback_type(self) -> int | None:
        return self.payload.get("type") if self.kind == "callback" else None

    @property
    def data(self) -> dict[str, Any]:
        """The message fields the bot sent (a callback nests them under "data")."""
        if self.kind == "callback":
            return self.payload.get("data") or {}
        return self.payload

    @property
    def content(self) -> str | None:
        return self.data.get("content")

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def message_id(self) -> str | None:
        return None if self.message is None else self.message["id"]

    @property
    def channel_id(self) -> str | None:
        return None if self.message is None else self.message["channel_id"]


def _is_final(sent: Sent) -> bool:
    """A response the user would read: a message callback, or a follow-up/edit with something in it."""
    if sent.kind == "callback":
        return sent.callback_type in (4, 7)
    if sent.kind in ("followup", "edit"):
        data = sent.data
        return bool(sent.files or data.get("content") or data.get("embeds") or data.get("attachments"))
    return False


@dataclass(eq=False)
class Interaction:
    """A handle on one interaction the stub dispatched; the REST side records the bot's answers in it."""

    payload: dict[str, Any]  # the INTERACTION_CREATE body
    sent_at: float = math.nan  # time.monotonic() just before the gateway frame went out
    responses: Recorder[Sent] = field(default_factory=Recorder)
    # The message "@original" names: the response message, or for a click the clicked message.
    original_message_id: str | None = None

    def __repr__(self) -> str:  # the whole payload would drown assertion messages
        name = self.payload["data"].get("name") or self.payload["data"].get("custom_id")
        return f"<Interaction {self.id} type={self.type} {name!r} responses={len(self.responses)}>"

    @property
    def id(self) -> str:
        return self.payload["id"]

    @property
    def token(self) -> str:
        return self.payload["token"]

    @property
    def type(self) -> int:
        return self.payload["type"]

    @property
    def acked(self) -> bool:
        return any(sent.kind == "callback" for sent in self.responses)

    async def wait_ack(self, timeout: float = 5.0) -> Sent:
        """The interaction callback (type 4-9); its `.at - self.sent_at` is the acknowledgement latency."""
        return await self.responses.wait_for(lambda s: s.kind == "callback", timeout=timeout)

    async def wait_response(self, timeout: float = 5.0) -> Sent:
        """The first answer a user would read: a type 4/7 callback, or a follow-up or edit with
        content, embeds or files. Progress edits count too: for a later answer, wait on
        `responses` with your own predicate."""
        return await self.responses.wait_for(_is_final, timeout=timeout)
