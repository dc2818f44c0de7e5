"""The SQLite job store: records survive a reopen, updates keep the rest, unfinished jobs are found."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from commands.context import RequestContext
from commands.jobs import JobRecord, JobStore

CONTEXT = RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7", channel_id="8",
                         interaction_id="99", message_link="ignored")


@pytest.fixture
async def store(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    yield store
    await store.close()


async def test_a_job_survives_closing_and_reopening_the_store(tmp_path):
    path = tmp_path / "data" / "jobs.sqlite3"
    first = JobStore(path)
    await first.add(JobRecord.new("job1", "generate", CONTEXT, {"prompt_prefix": "a", "count": 2}))
    await first.update("job1", state="running", call_id="fc-1")
    await first.close()

    reopened = JobStore(path)
    try:
        record = await reopened.get("job1")
    finally:
        await reopened.close()
    assert (record.kind, record.state, record.call_id) == ("generate", "running", "fc-1")
    assert record.request == {"prompt_prefix": "a", "count": 2}
    assert (record.user_id, record.guild_id, record.channel_id, record.interaction_id) == ("42", "7", "8", "99")
    assert record.context == RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7",
                                            channel_id="8", interaction_id="99")


async def test_update_changes_only_the_given_fields_and_the_time(store):
    await store.add(JobRecord.new("job1", "train", CONTEXT, {"subject": "qwerty"}))
    before = await store.get("job1")
    after = await store.update("job1", state="done", result={"version": 3})
    assert after.state == "done" and after.result == {"version": 3}
    assert after.request == before.request and after.created_at == before.created_at
    assert after.updated_at >= before.updated_at
    assert await store.get("job1") == after


async def test_unknown_fields_and_jobs_are_refused(store):
    await store.add(JobRecord.new("job1", "train", CONTEXT, {}))
    with pytest.raises(ValueError, match="no such job fields"):
        await store.update("job1", colour="red")
    with pytest.raises(KeyError):
        await store.update("nope", state="done")


async def test_unfinished_lists_queued_and_running_jobs_of_a_front_end_oldest_first(store):
    shell = RequestContext(front_end="shell")
    for job_id, state, context in [("a", "running", CONTEXT), ("b", "done", CONTEXT), ("c", "queued", CONTEXT),
                                   ("d", "failed", CONTEXT), ("e", "running", shell)]:
        await store.add(JobRecord.new(job_id, "generate", context, {}, state=state))
    assert [r.job_id for r in await store.unfinished("discord")] == ["a", "c"]
    assert [r.job_id for r in await store.unfinished()] == ["a", "c", "e"]


async def test_update_soon_from_synchronous_code_is_written_by_close(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    await store.add(JobRecord.new("job1", "train", CONTEXT, {}))
    store.update_soon("job1", call_id="fc-9")
    await store.close()
    reopened = JobStore(path)
    assert (await reopened.get("job1")).call_id == "fc-9"
    await reopened.close()


async def test_many_concurrent_writers_lose_nothing(store):
    await asyncio.gather(*(store.add(JobRecord.new(f"j{i}", "generate", CONTEXT, {"i": i})) for i in range(50)))
    await asyncio.gather(*(store.update(f"j{i}", state="done") for i in range(50)))
    records = await store.all()
    assert len(records) == 50 and {r.state for r in records} == {"done"}


async def test_writes_asked_for_together_fail_alone_when_only_they_are_wrong(store):
    """Writes of one turn share a transaction; an unknown job refuses only its own write."""
    outcomes = await asyncio.gather(
        store.add(JobRecord.new("j1", "generate", CONTEXT, {})),
        store.update("nope", state="done"),
        store.add(JobRecord.new("j1", "generate", CONTEXT, {})),  # the same id twice
        store.add(JobRecord.new("j2", "generate", CONTEXT, {})),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], KeyError) and isinstance(outcomes[2], sqlite3.IntegrityError)
    assert [r.job_id for r in await store.all()] == ["j1", "j2"]


async def test_a_read_sees_the_writes_asked_for_before_it(store):
    await store.add(JobRecord.new("job1", "train", CONTEXT, {}))
    store.update_soon("job1", call_id="fc-1")
    pending = asyncio.ensure_future(store.update("job1", state="running"))
    await asyncio.sleep(0)  # asked for, not yet handed to the store's thread
    record = await store.get("job1")
    assert (record.call_id, record.state) == ("fc-1", "running")
    assert (await pending).state == "running"


async def test_a_cancelled_writer_still_has_its_write_made(store):
    """A batch is written whole: cancelling one caller (a shutdown) does not tear it."""
    writer = asyncio.ensure_future(store.add(JobRecord.new("job1", "generate", CONTEXT, {})))
    await asyncio.sleep(0)  # its write is queued
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert (await store.get("job1")).state == "queued"


async def test_a_write_to_a_closed_store_fails_at_once(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    await store.close()
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(store.add(JobRecord.new("job1", "generate", CONTEXT, {})), 1)
