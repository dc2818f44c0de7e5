"""SQLite faults, injected for real: damaged files, a file from newer code, old files, a lock held elsewhere."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from commands.community import CommunityStore
from commands.context import RequestContext
from commands.errors import reply_for
from commands.community.store import MIGRATIONS as COMMUNITY_MIGRATIONS
from commands.jobs import MIGRATIONS as JOB_MIGRATIONS
from commands.jobs import JobRecord, JobStore
from commands.sqlite_file import SchemaTooNew, StorageBusy, open_database

CONTEXT = RequestContext(front_end="discord", user_id="42", guild_id="7", channel_id="8")

# The files written before migrations existed: the job store never set user_version (0), the community
# store set it to 1. Copied here as released, so a change to the live schema cannot hide a lost upgrade.
RELEASED_JOBS_SCHEMA = """
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, front_end TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '', user_name TEXT NOT NULL DEFAULT '', guild_id TEXT NOT NULL DEFAULT '',
    channel_id TEXT NOT NULL DEFAULT '', interaction_id TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL DEFAULT '', request TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}',
    call_id TEXT, error TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, front_end);
"""
RELEASED_COMMUNITY_SCHEMA = """
CREATE TABLE guild_settings (guild_id TEXT PRIMARY KEY, gallery_channel_id TEXT, spoiler INTEGER NOT NULL DEFAULT 0);
CREATE TABLE banned_words (guild_id TEXT NOT NULL, word TEXT NOT NULL, added_by TEXT NOT NULL DEFAULT '',
    added_at REAL NOT NULL, PRIMARY KEY (guild_id, word));
CREATE TABLE shares (share_id TEXT PRIMARY KEY, guild_id TEXT NOT NULL, row_id TEXT NOT NULL,
    channel_id TEXT NOT NULL, message_id TEXT, shared_by TEXT NOT NULL, creator_id TEXT NOT NULL,
    prompt TEXT NOT NULL, seed INTEGER NOT NULL, subject TEXT NOT NULL, version INTEGER,
    source_link TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, posted_at REAL, removed_at REAL,
    removed_by TEXT, UNIQUE (guild_id, row_id));
CREATE INDEX shares_by_message ON shares (guild_id, message_id);
CREATE INDEX shares_by_time ON shares (guild_id, posted_at);
CREATE TABLE votes (share_id TEXT NOT NULL REFERENCES shares (share_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL, voted_at REAL NOT NULL, PRIMARY KEY (share_id, user_id));
PRAGMA user_version = 1;
"""


def write_database(path: Path, script: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(script)
    db.close()


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def moved_aside(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm")))


def damage_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "commands.sqlite_file" and "is damaged" in r.message]


async def filled_job_file(path: Path, count: int = 300) -> int:
    """A real job store with `count` jobs, closed (so everything is in the main file); its size."""
    store = JobStore(path)
    for i in range(count):
        await store.add(JobRecord.new(f"old{i}", "generate", CONTEXT, {"prompt_prefix": "x" * 200}))
    await store.close()
    return path.stat().st_size


# Damaged files


async def test_a_job_file_of_random_bytes_is_moved_aside_once_and_a_fresh_store_serves(tmp_path, caplog):
    path = tmp_path / "jobs.sqlite3"
    garbage = os.urandom(16 * 1024)
    path.write_bytes(garbage)
    store = JobStore(path)
    try:
        await store.add(JobRecord.new("job1", "generate", CONTEXT, {}))
        assert [r.job_id for r in await store.all()] == ["job1"]
    finally:
        await store.close()
    [aside] = moved_aside(path)
    assert aside.read_bytes() == garbage  # kept for the operator, never deleted
    [line] = damage_lines(caplog)
    assert str(path) in line and aside.name in line


async def test_a_truncated_job_file_is_replaced_when_the_store_opens(tmp_path, caplog):
    path = tmp_path / "jobs.sqlite3"
    size = await filled_job_file(path)
    os.truncate(path, size // 2)
    store = JobStore(path)
    try:
        assert await store.all() == []
        await store.add(JobRecord.new("job1", "train", CONTEXT, {}))
        assert (await store.get("job1")).kind == "train"
    finally:
        await store.close()
    [aside] = moved_aside(path)
    assert aside.stat().st_size == size // 2
    assert len(damage_lines(caplog)) == 1


async def test_a_job_file_truncated_under_a_running_store_is_replaced_and_the_next_call_works(tmp_path, caplog):
    path = tmp_path / "jobs.sqlite3"
    size = await filled_job_file(path)
    store = JobStore(path)
    try:
        assert len(await store.all()) == 300
        os.truncate(path, size // 2)  # a bad copy or sync over the file while the bot runs
        await store.add(JobRecord.new("after", "generate", CONTEXT, {}))
        assert [r.job_id for r in await store.all()] == ["after"]
    finally:
        await store.close()
    assert len(moved_aside(path)) == 1 and len(damage_lines(caplog)) == 1


def test_a_truncated_community_file_is_moved_aside_and_the_bot_can_start(tmp_path, caplog):
    path = tmp_path / "community.sqlite3"
    with CommunityStore(path) as store:
        for guild in range(400):
            store.add_banned_words(str(guild), [f"word{i}" for i in range(10)], by="mod", at=1.0)
    size = path.stat().st_size
    os.truncate(path, size // 3)
    with CommunityStore(path) as store:
        assert store.banned_words("1") == []
        assert store.add_banned_words("1", ["new"], by="mod", at=2.0) == ["new"]
    [aside] = moved_aside(path)
    assert aside.stat().st_size == size // 3
    assert len(damage_lines(caplog)) == 1


def test_a_community_file_damaged_mid_file_is_caught_by_the_integrity_check(tmp_path, caplog):
    path = tmp_path / "community.sqlite3"
    with CommunityStore(path) as store:
        for guild in range(400):
            store.add_banned_words(str(guild), [f"word{i}" for i in range(10)], by="mod", at=1.0)
    data = bytearray(path.read_bytes())
    data[4096:8192] = os.urandom(4096)  # page 2: the header still reads fine
    path.write_bytes(bytes(data))
    with CommunityStore(path) as store:
        assert store.banned_words("1") == []
    assert len(moved_aside(path)) == 1 and len(damage_lines(caplog)) == 1


# Schema versions


@pytest.mark.parametrize("name", ["jobs.sqlite3", "community.sqlite3"])
async def test_a_file_from_newer_code_is_refused_naming_the_file_and_versions(tmp_path, name):
    path = tmp_path / name
    write_database(path, "CREATE TABLE future (x); PRAGMA user_version = 99;")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew) as refused:
        if name == "jobs.sqlite3":
            store = JobStore(path)
            try:
                await store.all()
            finally:
                await store.close()
        else:
            CommunityStore(path)
    supported = len(JOB_MIGRATIONS if name == "jobs.sqlite3" else COMMUNITY_MIGRATIONS)
    assert (refused.value.found, refused.value.supported) == (99, supported)
    assert str(path) in str(refused.value) and "99" in str(refused.value)
    assert path.read_bytes() == before and moved_aside(path) == []


async def test_a_job_file_written_before_migrations_upgrades_with_nothing_lost(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    write_database(path, RELEASED_JOBS_SCHEMA + """
        INSERT INTO jobs (job_id, kind, state, front_end, user_id, request, call_id, created_at, updated_at)
        VALUES ('j1', 'train', 'running', 'discord', '42', '{"subject": "qwerty"}', 'fc-1', 1.0, 2.0);
    """)
    assert user_version(path) == 0
    store = JobStore(path)
    try:
        record = await store.get("j1")
        assert [r.job_id for r in await store.unfinished("discord")] == ["j1"]
    finally:
        await store.close()
    assert (record.kind, record.state, record.call_id, record.request) == ("train", "running", "fc-1",
                                                                           {"subject": "qwerty"})
    assert user_version(path) == len(JOB_MIGRATIONS)


def test_a_community_file_written_before_migrations_keeps_its_data(tmp_path):
    path = tmp_path / "community.sqlite3"
    write_database(path, RELEASED_COMMUNITY_SCHEMA + """
        INSERT INTO banned_words VALUES ('7', 'spam', 'mod', 1.0);
        INSERT INTO guild_settings VALUES ('7', '555', 1);
    """)
    with CommunityStore(path) as store:
        assert store.banned_words("7") == ["spam"]
        assert (store.gallery_channel("7"), store.spoiler("7")) == ("555", True)


def test_migrations_run_step_by_step_and_a_failing_step_keeps_the_last_good_version(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="commands.sqlite_file")
    path = tmp_path / "steps.sqlite3"
    applied = []

    def step(number, sql):
        def migrate(db):
            applied.append(number)
            db.execute(sql)
        return migrate

    first = [step(1, "CREATE TABLE a (x)"), step(2, "ALTER TABLE a ADD COLUMN y")]
    open_database(path, first).close()
    broken = [*first, step(3, "CREATE TABLE b (x)"), step(4, "ALTER TABLE nowhere ADD COLUMN z")]
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        open_database(path, broken)
    assert applied == [1, 2, 3, 4] and user_version(path) == 3
    fixed = [*broken[:3], step(4, "ALTER TABLE a ADD COLUMN z")]
    open_database(path, fixed).close()
    assert applied == [1, 2, 3, 4, 4] and user_version(path) == 4
    assert "schema upgraded from version 3 to 4" in caplog.text


# A lock held by another connection


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection (the shell, say) in the middle of a write, until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("COMMIT")
    finally:
        other.close()


async def test_a_job_store_locked_by_another_process_says_busy_then_recovers(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path, busy_timeout_s=0.05)
    await store.add(JobRecord.new("job1", "generate", CONTEXT, {}))
    try:
        with write_lock_held(path):
            with pytest.raises(StorageBusy) as busy:
                await store.add(JobRecord.new("job2", "generate", CONTEXT, {}))
            assert (await store.get("job1")).state == "queued"  # readers are not blocked (WAL)
        await store.add(JobRecord.new("job2", "generate", CONTEXT, {}))
        assert [r.job_id for r in await store.all()] == ["job1", "job2"]
    finally:
        await store.close()
    reply = reply_for(busy.value)
    assert "busy" in reply.text and "try again" in reply.text
    assert str(path) not in reply.text and "sqlite" not in reply.text.lower()
    assert reply.unexpected and reply.reference in reply.text  # logged by the caller, as an outage


def test_a_community_store_locked_by_another_process_says_busy_then_recovers(tmp_path):
    path = tmp_path / "community.sqlite3"
    with CommunityStore(path, busy_timeout_s=0.05) as store:
        with write_lock_held(path):
            with pytest.raises(StorageBusy):
                store.add_banned_words("7", ["spam"], by="mod", at=1.0)
            with pytest.raises(StorageBusy):
                store.set_spoiler("7", True)
        assert store.add_banned_words("7", ["spam"], by="mod", at=1.0) == ["spam"]
        store.set_spoiler("7", True)
        assert store.spoiler("7")


async def test_every_write_of_a_batch_hears_that_the_store_is_busy(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path, busy_timeout_s=0.05)
    await store.add(JobRecord.new("job1", "generate", CONTEXT, {}))
    with write_lock_held(path):
        outcomes = await asyncio.gather(
            store.add(JobRecord.new("job2", "generate", CONTEXT, {})), store.update("job1", state="running"),
            return_exceptions=True,
        )
    assert [type(outcome) for outcome in outcomes] == [StorageBusy, StorageBusy]
    assert [(r.job_id, r.state) for r in await store.all()] == [("job1", "queued")]  # nothing half-written
    await store.close()
