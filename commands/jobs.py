"""The job store: every /qwerty and /train, who asked, where, what, and how it ended, in SQLite.

One file under DATA_DIR (WAL mode, so a shell and the bot can share it). All SQL runs on one thread
owned by the store, so the event loop never waits on the disk and the connection is never shared
between threads. Writes asked for in one turn of the event loop are committed together: a burst of 200
/qwerty costs one thread hop and one commit, not 200 of each, so the writes do not slow the burst's
acknowledgements (bench/ack_latency.py). On start a front end asks for `unfinished()` jobs: nothing is
ever silently lost.

A file another process keeps locked past the busy timeout raises StorageBusy (members read "busy, try
again"); a file found damaged is moved aside and a fresh one used, so one bad file never fails every
command while the bot looks healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from commands.context import RequestContext
from commands.sqlite_file import (
    BUSY_TIMEOUT_S, StorageBusy, create_statements, is_busy, is_corrupt, move_aside, open_database,
)

JobKind = Literal["generate", "train"]
JobState = Literal["queued", "running", "done", "failed"]
UNFINISHED: tuple[JobState, ...] = ("queued", "running")
T = TypeVar("T")
log = logging.getLogger(__name__)

_CREATE_JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    front_end TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    user_name TEXT NOT NULL DEFAULT '',
    guild_id TEXT NOT NULL DEFAULT '',
    channel_id TEXT NOT NULL DEFAULT '',
    interaction_id TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL DEFAULT '',
    request TEXT NOT NULL DEFAULT '{}',
    result TEXT NOT NULL DEFAULT '{}',
    call_id TEXT,
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, front_end);
"""
# Schema version N is reached by MIGRATIONS[N - 1]; append new steps, never edit a released one.
MIGRATIONS = (create_statements(_CREATE_JOBS),)
_JSON_FIELDS = ("request", "result")
_TIMEOUT_S = 30.0  # a wait on the disk; SQLite's own busy timeout is shorter


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    kind: JobKind
    state: JobState
    front_end: str
    user_id: str = ""
    user_name: str = ""
    guild_id: str = ""
    channel_id: str = ""
    interaction_id: str = ""
    message_id: str = ""  # the reply (generation) or the channel progress message (training)
    request: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)  # W&B row ids, or the trained version
    call_id: str | None = None  # the GPU backend's handle, to re-attach after a restart
    error: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def new(
        cls, job_id: str, kind: JobKind, context: RequestContext, request: dict[str, Any],
        state: JobState = "queued",
    ) -> JobRecord:
        now = time.time()
        who = {name: value for name, value in context.to_dict().items() if name != "message_link"}
        return cls(job_id=job_id, kind=kind, state=state, request=request, created_at=now,
                   updated_at=now, **who)

    @property
    def context(self) -> RequestContext:
        return RequestContext(
            front_end=self.front_end, user_id=self.user_id, user_name=self.user_name,
            guild_id=self.guild_id, channel_id=self.channel_id, interaction_id=self.interaction_id,
        )


_COLUMNS = [f.name for f in fields(JobRecord)]


@dataclass
class _Write:
    """One write waiting for its batch: what to run on the store's thread, and who waits for it."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    waiter: asyncio.Future | None  # None: nobody waits (update_soon)
    outcome: tuple[Any, BaseException | None] = (None, None)


class JobStore:
    def __init__(self, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-store")
        self._connection: sqlite3.Connection | None = None  # touched only on the executor's thread
        self._batch: list[_Write] = []  # writes asked for in this turn of the loop, not yet handed over

    async def add(self, record: JobRecord) -> None:
        await self._write(self._insert, record)

    async def update(self, job_id: str, **changes: Any) -> JobRecord:
        """Change some fields (and updated_at); returns the record as stored."""
        return await self._write(self._update, job_id, changes)

    def update_soon(self, job_id: str, **changes: Any) -> None:
        """The same from synchronous code on the loop's thread (a progress callback); `close` writes it."""
        self._queue(_Write(self._update, (job_id, changes), None))

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._run(self._select_one, job_id)

    async def unfinished(self, front_end: str | None = None) -> list[JobRecord]:
        """Jobs still queued or running, oldest first (those a restart interrupted)."""
        return await self._run(self._select_unfinished, front_end)

    async def all(self) -> list[JobRecord]:
        return await self._run(self._select, "SELECT * FROM jobs ORDER BY created_at, rowid", ())

    async def close(self) -> None:
        self._hand_over()
        async with asyncio.timeout(_TIMEOUT_S):
            await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._connection is not None:  # the executor's thread is gone: nobody else holds it
            self._connection.close()
            self._connection = None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """A read: after the writes asked for before it (the executor runs its work in order)."""
        self._hand_over()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(_TIMEOUT_S):
            return await loop.run_in_executor(self._executor, self._guarded, function, *args)

    async def _write(self, function: Callable[..., T], *args: Any) -> T:
        waiter = asyncio.get_running_loop().create_future()
        self._queue(_Write(function, args, waiter))
        async with asyncio.timeout(_TIMEOUT_S):
            return await asyncio.shield(waiter)  # a cancelled caller leaves its write to the batch

    def _queue(self, write: _Write) -> None:
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._hand_over)
        self._batch.append(write)

    def _hand_over(self) -> None:
        """The writes of this turn go to the store's thread as one job; their waiters hear back in one call."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        loop = asyncio.get_running_loop()
        try:
            done = self._executor.submit(self._commit, batch)
        except RuntimeError as error:  # the store is closed: say so now, not after the timeout
            for write in batch:
                write.outcome = (None, error)
            _tell_waiters(batch)
            return
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(_tell_waiters, batch))

    # on the store's thread

    def _commit(self, batch: list[_Write]) -> None:
        """One transaction for the batch. A write that is wrong on its own (an unknown job or field) fails
        alone; a store that fails (busy, unwritable) fails every write of the batch."""
        try:
            self._guarded(self._apply, batch)
        except BaseException as error:  # every waiter hears it, whatever it is
            for write in batch:
                write.outcome = (None, error)

    def _apply(self, batch: list[_Write]) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            for write in batch:
                try:
                    write.outcome = (write.function(*write.args), None)
                except (KeyError, ValueError, sqlite3.IntegrityError) as error:
                    write.outcome = (None, error)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # a damaged file may refuse even this
                db.rollback()
            raise

    def _guarded(self, function: Callable[..., T], *args: Any) -> T:
        """Run one operation; a lock held too long becomes StorageBusy, a damaged file is replaced once."""
        try:
            try:
                return function(*args)
            except sqlite3.DatabaseError as error:
                if not is_corrupt(error):
                    raise
                self._replace_damaged_file(error)
                return function(*args)
        except sqlite3.OperationalError as error:
            if is_busy(error):
                raise StorageBusy(self.path) from error
            raise

    def _replace_damaged_file(self, error: sqlite3.DatabaseError) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        move_aside(self.path, error)

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = open_database(self.path, MIGRATIONS, busy_timeout_s=self.busy_timeout_s)
            connection.row_factory = sqlite3.Row
            self._connection = connection
        return self._connection

    def _insert(self, record: JobRecord) -> None:
        row = _to_row(record)
        marks = ", ".join("?" for _ in _COLUMNS)
        self._db().execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({marks})", [row[c] for c in _COLUMNS])

    def _update(self, job_id: str, changes: dict[str, Any]) -> JobRecord:
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"no such job fields: {sorted(unknown)}")
        current = self._select_one(job_id)
        if current is None:
            raise KeyError(f"no job {job_id!r}")
        updated = replace(current, **changes, updated_at=time.time())
        row = _to_row(updated)
        names = [name for name in _COLUMNS if name != "job_id"]
        self._db().execute(f"UPDATE jobs SET {', '.join(f'{n} = ?' for n in names)} WHERE job_id = ?",
                           [row[n] for n in names] + [job_id])
        return updated

    def _select_one(self, job_id: str) -> JobRecord | None:
        found = self._select("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        return found[0] if found else None

    def _select_unfinished(self, front_end: str | None) -> list[JobRecord]:
        query = f"SELECT * FROM jobs WHERE state IN ({', '.join('?' for _ in UNFINISHED)})"
        arguments: list[str] = list(UNFINISHED)
        if front_end is not None:
            query += " AND front_end = ?"
            arguments.append(front_end)
        return self._select(query + " ORDER BY created_at, rowid", arguments)

    def _select(self, query: str, arguments) -> list[JobRecord]:
        return [_from_row(row) for row in self._db().execute(query, arguments).fetchall()]


def _tell_waiters(batch: list[_Write]) -> None:
    for write in batch:
        value, error = write.outcome
        if write.waiter is None:
            if error is not None:
                log.error("a job store write nobody waited for failed: %r", error)
        elif not write.waiter.done():
            if error is None:
                write.waiter.set_result(value)
            else:
                write.waiter.set_exception(error)


def _to_row(record: JobRecord) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in _COLUMNS}
    for name in _JSON_FIELDS:
        row[name] = json.dumps(row[name], sort_keys=True)
    return row


def _from_row(row: sqlite3.Row) -> JobRecord:
    values = {name: row[name] for name in _COLUMNS}
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name])
    return JobRecord(**values)
