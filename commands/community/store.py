"""The community's SQLite file: per-guild settings, banned words, gallery shares and votes.

Every method is synchronous and runs one short transaction (WAL, synchronous=NORMAL: well under a
millisecond) but may wait up to the busy timeout when another process holds the file's write lock, so
async callers run them with `asyncio.to_thread` (the store is thread-safe). One connection per store,
guarded by a lock, serves every thread of the process; writes that read first (claiming a share) take
the database's write lock with BEGIN IMMEDIATE, so a second process on the same file (the terminal
shell) cannot interleave either. Times are stored as UTC epoch seconds. Opening the file upgrades its
schema step by step, refuses a file from newer code, and moves a damaged file aside (commands.sqlite_file);
a lock held past the busy timeout raises StorageBusy.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from commands.community.settings import ServerSettings
from commands.sqlite_file import BUSY_TIMEOUT_S, StorageBusy, create_statements, is_busy, open_database

_CREATE_COMMUNITY = """
CREATE TABLE IF NOT EXISTS guild_settings (
    guild_id TEXT PRIMARY KEY,
    gallery_channel_id TEXT,
    spoiler INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS banned_words (
    guild_id TEXT NOT NULL,
    word TEXT NOT NULL,
    added_by TEXT NOT NULL DEFAULT '',
    added_at REAL NOT NULL,
    PRIMARY KEY (guild_id, word)
);
CREATE TABLE IF NOT EXISTS shares (
    share_id TEXT PRIMARY KEY,
    guild_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    message_id TEXT,
    shared_by TEXT NOT NULL,
    creator_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    seed INTEGER NOT NULL,
    subject TEXT NOT NULL,
    version INTEGER,
    source_link TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    posted_at REAL,
    removed_at REAL,
    removed_by TEXT,
    UNIQUE (guild_id, row_id)
);
CREATE INDEX IF NOT EXISTS shares_by_message ON shares (guild_id, message_id);
CREATE INDEX IF NOT EXISTS shares_by_time ON shares (guild_id, posted_at);
CREATE TABLE IF NOT EXISTS votes (
    share_id TEXT NOT NULL REFERENCES shares (share_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    voted_at REAL NOT NULL,
    PRIMARY KEY (share_id, user_id)
);
"""
_SERVER_DEFAULTS = """
ALTER TABLE guild_settings ADD COLUMN default_subject TEXT;
ALTER TABLE guild_settings ADD COLUMN default_steps INTEGER;
ALTER TABLE guild_settings ADD COLUMN gallery_enabled INTEGER NOT NULL DEFAULT 1
"""
# Schema version N is reached by MIGRATIONS[N - 1]; append new steps, never edit a released one.
MIGRATIONS = (create_statements(_CREATE_COMMUNITY), create_statements(_SERVER_DEFAULTS))
_SETTINGS_COLUMNS = ("gallery_channel_id", "spoiler", "default_subject", "default_steps", "gallery_enabled")
_SHARE_COLUMNS = (
    "share_id, guild_id, row_id, channel_id, message_id, shared_by, creator_id, prompt, seed, subject, "
    "version, source_link, created_at, posted_at, removed_at, removed_by"
)


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


def _settings_of(row: tuple) -> ServerSettings:
    channel, spoiler, subject, steps, enabled = row
    return ServerSettings(channel, bool(spoiler), subject, steps, bool(enabled))


def _stored(value: object) -> object:
    return int(value) if isinstance(value, bool) else value


def message_link(guild_id: str, channel_id: str, message_id: str) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


@dataclass(frozen=True)
class ShareDraft:
    """What the bot knows when Share is clicked: which image, who made it, who shares it."""

    guild_id: str
    row_id: str  # the generation's W&B row id, `<generation_id>-<index>`
    channel_id: str  # the gallery channel it is about to be posted in
    shared_by: str
    creator_id: str
    prompt: str
    seed: int
    subject: str
    version: int | None
    source_link: str = ""  # the generation message the gallery post links back to


@dataclass(frozen=True)
class Share:
    """One image in a guild's gallery: claimed, then posted (message_id set), perhaps removed."""

    share_id: str
    guild_id: str
    row_id: str
    channel_id: str
    message_id: str | None
    shared_by: str
    creator_id: str
    prompt: str
    seed: int
    subject: str
    version: int | None
    source_link: str
    created_at: datetime
    posted_at: datetime | None = None
    removed_at: datetime | None = None
    removed_by: str | None = None

    @classmethod
    def _from_row(cls, row: tuple) -> Share:
        values = list(row)
        for position in (12, 13, 14):
            values[position] = _time(values[position])
        return cls(*values)

    @property
    def posted(self) -> bool:
        return self.message_id is not None

    @property
    def removed(self) -> bool:
        return self.removed_at is not None

    @property
    def link(self) -> str | None:
        """The gallery post's address; None until the bot has posted it."""
        return message_link(self.guild_id, self.channel_id, self.message_id) if self.message_id else None


ClaimKind = Literal["claimed", "posted", "pending", "removed"]


class CommunityStore:
    """Settings, banned words, shares and votes in one SQLite file, brought to the latest schema on open."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_database(self.path, MIGRATIONS, busy_timeout_s=busy_timeout_s)
        self._db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CommunityStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone; a file locked past the busy timeout is StorageBusy."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.OperationalError as error:
                if is_busy(error):
                    raise StorageBusy(self.path) from error
                raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the file's write lock from its first read."""
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._locked() as db:
            return db.execute(sql, params)

    def _read_one(self, sql: str, params: tuple = ()) -> tuple | None:
        with self._locked() as db:
            return db.execute(sql, params).fetchone()

    # Per-guild settings

    def gallery_channel(self, guild_id: str) -> str | None:
        return self.server_settings(guild_id).gallery_channel_id

    def set_gallery_channel(self, guild_id: str, channel_id: str | None) -> None:
        self.update_settings(guild_id, {"gallery_channel_id": channel_id})

    def spoiler(self, guild_id: str) -> bool:
        return self.server_settings(guild_id).spoiler

    def set_spoiler(self, guild_id: str, on: bool) -> None:
        self.update_settings(guild_id, {"spoiler": on})

    def server_settings(self, guild_id: str) -> ServerSettings:
        row = self._read_one(f"SELECT {', '.join(_SETTINGS_COLUMNS)} FROM guild_settings WHERE guild_id = ?",
                             (guild_id,))
        return ServerSettings() if row is None else _settings_of(row)

    def settings_by_guild(self) -> dict[str, ServerSettings]:
        """Every guild that has settings stored."""
        with self._locked() as db:
            rows = db.execute(f"SELECT guild_id, {', '.join(_SETTINGS_COLUMNS)} FROM guild_settings").fetchall()
        return {row[0]: _settings_of(row[1:]) for row in rows}

    def update_settings(self, guild_id: str, values: dict[str, object]) -> None:
        """Write the named settings (columns of `_SETTINGS_COLUMNS`) in one statement."""
        columns = [column for column in _SETTINGS_COLUMNS if column in values]
        if len(columns) != len(values):
            raise ValueError(f"unknown settings: {sorted(set(values) - set(columns))}")
        if not columns:
            return
        updates = ", ".join(f"{column} = excluded.{column}" for column in columns)
        self._write(
            f"INSERT INTO guild_settings (guild_id, {', '.join(columns)}) VALUES (?{', ?' * len(columns)}) "
            f"ON CONFLICT (guild_id) DO UPDATE SET {updates}",
            (guild_id, *(_stored(values[column]) for column in columns)),
        )

    # Banned words (already normalized by the caller)

    def banned_words(self, guild_id: str) -> list[str]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT word FROM banned_words WHERE guild_id = ? ORDER BY word", (guild_id,)
            ).fetchall()
        return [word for (word,) in rows]

    def banned_words_by_guild(self) -> dict[str, list[str]]:
        """Every guild's banned words (a guild with none is left out)."""
        with self._locked() as db:
            rows = db.execute("SELECT guild_id, word FROM banned_words ORDER BY guild_id, word").fetchall()
        by_guild: dict[str, list[str]] = {}
        for guild_id, word in rows:
            by_guild.setdefault(guild_id, []).append(word)
        return by_guild

    def add_banned_words(self, guild_id: str, words: Iterable[str], by: str, at: float) -> list[str]:
        """The words that were not banned yet, now banned."""
        added = []
        with self._transaction() as db:
            for word in dict.fromkeys(words):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO banned_words (guild_id, word, added_by, added_at) "
                    "VALUES (?, ?, ?, ?)", (guild_id, word, by, at),
                )
                if cursor.rowcount:
                    added.append(word)
        return added

    def remove_banned_words(self, guild_id: str, words: Iterable[str]) -> list[str]:
        """The words that were banned and no longer are."""
        removed = []
        for word in dict.fromkeys(words):
            cursor = self._write("DELETE FROM banned_words WHERE guild_id = ? AND word = ?", (guild_id, word))
            if cursor.rowcount:
                removed.append(word)
        return removed

    # Shares

    def claim_share(
        self, draft: ShareDraft, share_id: str, now: float, stale_before: float
    ) -> tuple[ClaimKind, Share]:
        """Atomically: a new claim for this image, or the share that already holds it.

        A claim never confirmed (the bot died while posting) is taken over once created before
        `stale_before`; a removed share stays, so a removed image cannot come back.
        """
        with self._transaction():
            return self._claim(draft, share_id, now, stale_before)

    def _claim(self, draft: ShareDraft, share_id: str, now: float, stale_before: float):
        row = self._db.execute(
            f"SELECT {_SHARE_COLUMNS} FROM shares WHERE guild_id = ? AND row_id = ?",
            (draft.guild_id, draft.row_id),
        ).fetchone()
        if row is not None:
            existing = Share._from_row(row)
            if existing.removed:
                return "removed", existing
            if existing.posted:
                return "posted", existing
            if existing.created_at.timestamp() >= stale_before:
                return "pending", existing
            self._db.execute("DELETE FROM shares WHERE share_id = ?", (existing.share_id,))
        self._db.execute(
            "INSERT INTO shares (share_id, guild_id, row_id, channel_id, shared_by, creator_id, prompt, "
            "seed, subject, version, source_link, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (share_id, draft.guild_id, draft.row_id, draft.channel_id, draft.shared_by, draft.creator_id,
             draft.prompt, draft.seed, draft.subject, draft.version, draft.source_link, now),
        )
        row = self._db.execute(
            f"SELECT {_SHARE_COLUMNS} FROM shares WHERE share_id = ?", (share_id,)
        ).fetchone()
        return "claimed", Share._from_row(row)

    def get_share(self, share_id: str) -> Share | None:
        row = self._read_one(f"SELECT {_SHARE_COLUMNS} FROM shares WHERE share_id = ?", (share_id,))
        return None if row is None else Share._from_row(row)

    def find_share(self, guild_id: str, post: str) -> Share | None:
        """A guild's share by its share id or by its gallery message id."""
        row = self._read_one(
            f"SELECT {_SHARE_COLUMNS} FROM shares WHERE guild_id = ? AND (share_id = ? OR message_id = ?)",
            (guild_id, post, post),
        )
        return None if row is None else Share._from_row(row)

    def find_by_row(self, guild_id: str, row_id: str) -> Share | None:
        row = self._read_one(
            f"SELECT {_SHARE_COLUMNS} FROM shares WHERE guild_id = ? AND row_id = ?", (guild_id, row_id)
        )
        return None if row is None else Share._from_row(row)

    def mark_posted(self, share_id: str, channel_id: str, message_id: str, now: float) -> bool:
        """Record the gallery message; False when the claim is gone, removed, or already posted."""
        cursor = self._write(
            "UPDATE shares SET channel_id = ?, message_id = ?, posted_at = ? "
            "WHERE share_id = ? AND message_id IS NULL AND removed_at IS NULL",
            (channel_id, message_id, now, share_id),
        )
        return cursor.rowcount == 1

    def drop_claim(self, share_id: str) -> bool:
        """Forget a claim that was never posted, so Share can be tried again."""
        cursor = self._write(
            "DELETE FROM shares WHERE share_id = ? AND message_id IS NULL AND removed_at IS NULL", (share_id,)
        )
        return cursor.rowcount == 1

    def mark_removed(self, share_id: str, by: str, now: float) -> bool:
        """False when it was removed already (the first removal is the one recorded)."""
        cursor = self._write(
            "UPDATE shares SET removed_at = ?, removed_by = ? WHERE share_id = ? AND removed_at IS NULL",
            (now, by, share_id),
        )
        return cursor.rowcount == 1

    # Votes

    def add_vote(self, share_id: str, user_id: str, now: float) -> tuple[bool, int]:
        """(whether this vote is new, the post's total)."""
        with self._locked() as db:
            added = db.execute(
                "INSERT OR IGNORE INTO votes (share_id, user_id, voted_at) VALUES (?, ?, ?)",
                (share_id, user_id, now),
            ).rowcount == 1
            return added, self._votes(share_id)

    def remove_vote(self, share_id: str, user_id: str) -> tuple[bool, int]:
        """(whether a vote was taken back, the post's total)."""
        with self._locked() as db:
            removed = db.execute(
                "DELETE FROM votes WHERE share_id = ? AND user_id = ?", (share_id, user_id)
            ).rowcount == 1
            return removed, self._votes(share_id)

    def votes(self, share_id: str) -> int:
        with self._locked():
            return self._votes(share_id)

    def _votes(self, share_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM votes WHERE share_id = ?", (share_id,)).fetchone()[0]

    def top(self, guild_id: str, since: float | None, limit: int) -> list[tuple[Share, int]]:
        """Posted, not removed shares posted at or after `since`: most votes first, then earliest."""
        columns = ", ".join(f"s.{name.strip()}" for name in _SHARE_COLUMNS.split(","))
        with self._locked() as db:
            rows = db.execute(
                f"SELECT {columns}, COUNT(v.user_id) AS total FROM shares s "
                "LEFT JOIN votes v ON v.share_id = s.share_id "
                "WHERE s.guild_id = ? AND s.message_id IS NOT NULL AND s.removed_at IS NULL "
                "AND (? IS NULL OR s.posted_at >= ?) "
                "GROUP BY s.share_id ORDER BY total DESC, s.posted_at ASC, s.share_id ASC LIMIT ?",
                (guild_id, since, since, limit),
            ).fetchall()
        return [(Share._from_row(row[:-1]), row[-1]) for row in rows]
