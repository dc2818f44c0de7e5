"""The gallery, votes and moderation, independent of Discord: the bot and the shell call this.

Methods that read or write the SQLite file are coroutines that run their transaction in a worker
thread (`asyncio.to_thread`), so no caller blocks the event loop on it. The banned-word lists are held
in memory, compiled, loaded once at construction and replaced on every add or remove, so the check
made before Discord's acknowledgement (`check_prompt`) is synchronous and does no I/O. Permission
checks belong to the caller (see `access`); the service records who acted. Every share, vote, unvote, removal and
deletion is logged as a `CommunityEvent` against the generation's row id.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Literal, ParamSpec, Protocol, TypeVar

from commands.community import moderation
from commands.community.errors import (
    BannedWordError, CommunityError, GalleryNotSet, ImageWithheld, ShareNotFound, ShareRemoved,
)
from commands.community.settings import ServerSettings, SettingsChange
from commands.community.store import CommunityStore, Share, ShareDraft
from commands.wandb_log import CommunityEvent

log = logging.getLogger(__name__)

MINUTES = 60
PENDING_TIMEOUT_S = 10 * MINUTES
Period = Literal["day", "week", "all"]
PERIODS: dict[str, timedelta | None] = {"day": timedelta(days=1), "week": timedelta(days=7), "all": None}
MAX_TOP = 25
_NO_BANNED_WORDS = moderation.BannedList(())
_DECISIONS = {"claimed": "post", "posted": "already_shared", "pending": "in_progress"}


class EventLog(Protocol):
    def log_event(self, event: CommunityEvent) -> None:
        """Record it without blocking the caller (WandbGenerationLog does)."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _in_thread(method: Callable[_P, _R]) -> Callable[_P, Awaitable[_R]]:
    """The method as a coroutine that runs it in a worker thread (the store is thread-safe)."""

    @functools.wraps(method)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await asyncio.to_thread(method, *args, **kwargs)

    return run


@dataclass(frozen=True)
class ShareDecision:
    """What Share should do: "post" the new share (then confirm_posted or abandon_share), or nothing
    because the image is "already_shared" (share.link says where) or "in_progress" (another click is
    posting it right now)."""

    kind: Literal["post", "already_shared", "in_progress"]
    share: Share

    @property
    def should_post(self) -> bool:
        return self.kind == "post"

    @property
    def message(self) -> str:
        """The member-facing line for a Share that posts nothing."""
        if self.kind == "already_shared":
            return f"This image is already in the gallery: {self.share.link}"
        if self.kind == "in_progress":
            return "This image is being shared right now."
        return "Sharing to the gallery…"


@dataclass(frozen=True)
class VoteOutcome:
    counted: bool  # vote: a new vote was added; unvote: a vote was taken back
    total: int


@dataclass(frozen=True)
class TopEntry:
    share_id: str
    row_id: str
    prompt: str
    creator_id: str
    votes: int
    channel_id: str
    message_id: str
    link: str
    shared_at: datetime


class CommunityService:
    def __init__(
        self,
        store: CommunityStore,
        events: EventLog,
        *,
        clock: Callable[[], datetime] = _utc_now,
        pending_timeout_s: float = PENDING_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.events = events
        self.clock = clock
        self.pending_timeout_s = pending_timeout_s
        self._banned_lock = threading.Lock()  # a store change and its cache update, as one step
        self._banned = {guild: moderation.BannedList(words) for guild, words in store.banned_words_by_guild().items()}
        self._settings_lock = threading.Lock()  # like the banned words: the store and its cached defaults, as one
        self._defaults = {guild: settings.request_defaults() for guild, settings in store.settings_by_guild().items()}

    # Gallery channel and spoiler setting

    @_in_thread
    def set_gallery_channel(self, guild_id: str, channel_id: str | None) -> None:
        """None turns the gallery off (Share is refused until a channel is set again)."""
        self.store.set_gallery_channel(guild_id, channel_id)

    @_in_thread
    def gallery_channel(self, guild_id: str) -> str | None:
        return self.store.gallery_channel(guild_id)

    @_in_thread
    def set_spoiler(self, guild_id: str, on: bool) -> None:
        self.store.set_spoiler(guild_id, on)

    @_in_thread
    def spoiler(self, guild_id: str) -> bool:
        """Whether this guild's images (generation replies and gallery posts) go out as spoilers."""
        return self.store.spoiler(guild_id)

    # Per-server settings

    @_in_thread
    def server_settings(self, guild_id: str) -> ServerSettings:
        return self.store.server_settings(guild_id)

    @_in_thread
    def update_settings(self, guild_id: str, change: SettingsChange) -> ServerSettings:
        """Store an already checked change (see `settings.change_settings`); the server's settings now."""
        with self._settings_lock:
            self.store.update_settings(guild_id, change.values())
            settings = self.store.server_settings(guild_id)
            self._defaults[guild_id] = settings.request_defaults()
        return settings

    def defaults_for(self, guild_id: str) -> dict[str, object]:
        """The /qwerty options this server fills in, from memory: admission does no I/O. Another process's
        change (the shell's) shows here after a restart, as banned words do."""
        return dict(self._defaults.get(guild_id, {}))

    # Sharing

    @_in_thread
    def begin_share(
        self,
        guild_id: str,
        row_id: str,
        shared_by: str,
        creator_id: str,
        prompt: str,
        seed: int,
        subject: str,
        version: int | None,
        *,
        source_link: str = "",
        withheld: bool = False,
    ) -> ShareDecision:
        """Claim the image for the gallery, once per guild even when clicks race.

        Raises ImageWithheld, GalleryNotSet (no channel, or the gallery is off), or ShareRemoved (a moderator took it down before).
        """
        if withheld:
            raise ImageWithheld()
        settings = self.store.server_settings(guild_id)
        if not settings.gallery_enabled:
            raise GalleryNotSet("An admin turned this server's gallery off, so nothing can be shared now.")
        channel_id = settings.gallery_channel_id
        if channel_id is None:
            raise GalleryNotSet()
        draft = ShareDraft(
            guild_id, row_id, channel_id, shared_by, creator_id, prompt, seed, subject, version, source_link
        )
        now = self.clock().timestamp()
        kind, share = self.store.claim_share(draft, uuid.uuid4().hex[:12], now, now - self.pending_timeout_s)
        if kind == "removed":
            raise ShareRemoved("A moderator removed this image from the gallery; it can't be shared again.")
        return ShareDecision(_DECISIONS[kind], share)

    @_in_thread
    def confirm_posted(self, share_id: str, channel_id: str, message_id: str) -> Share:
        """The bot posted the share: record where, and log the share. Idempotent for the same post.

        Raises ShareNotFound when the claim is gone (abandoned, or taken over after the pending
        timeout): the bot should delete the message it just posted.
        """
        if not self.store.mark_posted(share_id, channel_id, message_id, self.clock().timestamp()):
            share = self.store.get_share(share_id)
            if share is not None and share.message_id == message_id:
                return share
            raise ShareNotFound("That share was cancelled; try Share again.")
        share = self.store.get_share(share_id)
        self._log("share", share, share.shared_by,
                  f"share_id={share.share_id} creator={share.creator_id} link={share.link}")
        return share

    @_in_thread
    def abandon_share(self, share_id: str) -> bool:
        """Posting failed: forget the claim so a later Share works. False when nothing was dropped."""
        return self.store.drop_claim(share_id)

    # Votes and /top

    @_in_thread
    def vote(self, guild_id: str, post: str, user_id: str) -> VoteOutcome:
        """One vote per member per post: a second vote is not counted (counted=False)."""
        share = self._live_share(guild_id, post)
        counted, total = self.store.add_vote(share.share_id, user_id, self.clock().timestamp())
        if counted:
            self._log("vote", share, user_id, f"share_id={share.share_id} votes={total}")
        return VoteOutcome(counted, total)

    @_in_thread
    def unvote(self, guild_id: str, post: str, user_id: str) -> VoteOutcome:
        """Take a vote back (a removed reaction); counted=False when the member had not voted."""
        share = self._live_share(guild_id, post)
        counted, total = self.store.remove_vote(share.share_id, user_id)
        if counted:
            self._log("unvote", share, user_id, f"share_id={share.share_id} votes={total}")
        return VoteOutcome(counted, total)

    @_in_thread
    def votes(self, guild_id: str, post: str) -> int:
        share = self.store.find_share(guild_id, post)
        return 0 if share is None else self.store.votes(share.share_id)

    @_in_thread
    def top(
        self, guild_id: str, period: Period = "all", limit: int = 10, now: datetime | None = None
    ) -> list[TopEntry]:
        """The best images shared in the period (by when they were posted to the gallery), most votes
        first, ties to the earlier share. Removed and not-yet-posted shares are left out."""
        if period not in PERIODS:
            raise CommunityError(f"`period` must be day, week or all, not {period!r}.")
        if not 1 <= limit <= MAX_TOP:
            raise ValueError(f"limit must be 1..{MAX_TOP}, got {limit}")
        window = PERIODS[period]
        since = None if window is None else ((now or self.clock()) - window).timestamp()
        return [
            TopEntry(share.share_id, share.row_id, share.prompt, share.creator_id, votes, share.channel_id,
                     share.message_id, share.link, share.posted_at)
            for share, votes in self.store.top(guild_id, since, limit)
        ]

    # Moderation

    @_in_thread
    def remove_post(self, guild_id: str, post: str, by: str) -> Share:
        """Take a gallery post down (out of /top, no more votes or re-shares); the bot deletes the
        message. The caller checks the moderator permission. Repeating it changes nothing."""
        share = self.store.find_share(guild_id, post)
        if share is None:
            raise ShareNotFound()
        if self.store.mark_removed(share.share_id, by, self.clock().timestamp()):
            share = self.store.get_share(share.share_id)
            self._log("remove", share, by, f"share_id={share.share_id} creator={share.creator_id}")
        return share

    def record_deletion(self, guild_id: str, row_ids: Iterable[str], user_id: str) -> None:
        """A generation message was deleted: log it against each of its images' row ids."""
        for row_id in row_ids:
            self._emit(CommunityEvent("delete", row_id, user_id, guild_id))

    @_in_thread
    def add_banned_words(self, guild_id: str, words: Iterable[str], *, by: str = "") -> list[str]:
        """Ban words or short phrases (normalized); returns the ones that were not banned yet."""
        normalized = [self._normalized(word) for word in words]
        with self._banned_lock:
            current = self.store.banned_words(guild_id)
            if len(current) + len(set(normalized) - set(current)) > moderation.MAX_WORDS_PER_GUILD:
                raise CommunityError(f"A server can ban at most {moderation.MAX_WORDS_PER_GUILD} words.")
            added = self.store.add_banned_words(guild_id, normalized, by, self.clock().timestamp())
            self._reload_banned(guild_id)
        return added

    @_in_thread
    def remove_banned_words(self, guild_id: str, words: Iterable[str]) -> list[str]:
        """Returns the ones that were banned and no longer are."""
        with self._banned_lock:
            removed = self.store.remove_banned_words(guild_id, [moderation.normalize_word(word) for word in words])
            self._reload_banned(guild_id)
        return removed

    def banned_words(self, guild_id: str) -> list[str]:
        """The guild's banned entries, sorted, from memory."""
        return list(self._banned_list(guild_id).entries)

    def check_prompt(self, guild_id: str, *texts: str) -> None:
        """Raise BannedWordError, naming the word, when any text (prefix, postfix, negative prompt)
        uses a banned word; call it before any GPU time is spent. No I/O: the compiled list is in memory,
        so it can run on the event loop before the acknowledgement."""
        word = self._banned_list(guild_id).find(*texts)
        if word is not None:
            raise BannedWordError(word)

    # Helpers

    @staticmethod
    def _normalized(word: str) -> str:
        normalized = moderation.normalize_word(word)
        if not normalized:
            raise CommunityError(f"A banned word needs a letter or digit: {word!r}.")
        if len(normalized) > moderation.MAX_WORD_LENGTH:
            raise CommunityError(f"A banned word can be at most {moderation.MAX_WORD_LENGTH} characters.")
        return normalized

    def _banned_list(self, guild_id: str) -> moderation.BannedList:
        return self._banned.get(guild_id, _NO_BANNED_WORDS)

    def _reload_banned(self, guild_id: str) -> None:
        """Compile the guild's list again from the store, the one source of truth (called under the lock)."""
        self._banned[guild_id] = moderation.BannedList(self.store.banned_words(guild_id))

    def _live_share(self, guild_id: str, post: str) -> Share:
        share = self.store.find_share(guild_id, post)
        if share is None:
            raise ShareNotFound()
        if share.removed:
            raise ShareRemoved("A moderator removed this post, so it can't be voted on.")
        return share

    def _log(self, event: str, share: Share, user_id: str, detail: str) -> None:
        self._emit(CommunityEvent(event, share.row_id, user_id, share.guild_id, detail))

    def _emit(self, event: CommunityEvent) -> None:
        if not event.at:
            event = replace(event, at=self.clock().isoformat())
        try:
            self.events.log_event(event)
        except Exception:  # the action already happened; a logging failure must not undo it for the member
            log.exception("could not log community event %s for %s", event.event, event.row_id)


def gallery_caption(share: Share) -> str:
    """The gallery post's text: prompt, seed, subject version, credit, and a link to the original."""
    version = f" v{share.version}" if share.version is not None else " (base model)"
    credit = f"seed {share.seed} · {share.subject}{version} · by <@{share.creator_id}>"
    prompt = _escape_markdown(share.prompt)
    if len(prompt) > MAX_CAPTION_PROMPT:  # the whole post must stay within Discord's 2000 characters
        prompt = prompt[: MAX_CAPTION_PROMPT - 1] + "…"
    lines = [f"**{prompt}**", credit]
    if share.shared_by != share.creator_id:
        lines[-1] += f" · shared by <@{share.shared_by}>"
    if share.source_link:
        lines.append(f"[original]({share.source_link})")
    return "\n".join(lines)


MAX_CAPTION_PROMPT = 1500
_MARKDOWN = re.compile(r"([\\*_~`|>\[\]()#])")


def _escape_markdown(text: str) -> str:
    """A member's prompt shown as text: no bold, links or headings of its own."""
    return _MARKDOWN.sub(r"\\\1", text)
