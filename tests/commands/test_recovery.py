"""At start, jobs a restart interrupted are resumed (trainings) or reported, then marked: never lost."""

from __future__ import annotations

import pytest

from commands.context import RequestContext
from commands.jobs import JobRecord, JobStore
from commands.recovery import INTERRUPTED, interrupted_text, recover

CONTEXT = RequestContext(front_end="discord", user_id="42", channel_id="8")


@pytest.fixture
async def jobs(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    yield store
    await store.close()


async def test_generations_are_reported_then_failed_and_trainings_resumed(jobs):
    await jobs.add(JobRecord.new("g1", "generate", CONTEXT, {"prompt_prefix": "a cat"}, state="running"))
    await jobs.add(JobRecord.new("g2", "generate", CONTEXT, {}, state="queued"))
    await jobs.add(JobRecord.new("t1", "train", CONTEXT, {"subject": "qwerty"}, state="running"))
    await jobs.add(JobRecord.new("done", "generate", CONTEXT, {}, state="done"))
    await jobs.add(JobRecord.new("other", "generate", RequestContext("shell"), {}, state="running"))
    reported, resumed = [], []

    async def report(record):
        reported.append(record.job_id)

    outcome = await recover(jobs, "discord", report=report, resume=lambda r: resumed.append(r.job_id))
    assert (reported, resumed) == (["g1", "g2"], ["t1"])
    assert (outcome.reported, outcome.resumed) == (("g1", "g2"), ("t1",))
    assert [(await jobs.get(j)).state for j in ("g1", "g2", "t1", "other")] == ["failed", "failed", "running", "running"]
    assert (await jobs.get("g1")).error == INTERRUPTED


async def test_a_report_that_fails_still_marks_the_job_failed(jobs):
    await jobs.add(JobRecord.new("g1", "generate", CONTEXT, {}, state="running"))

    async def report(record):
        raise OSError("channel gone")

    await recover(jobs, "discord", report=report)
    assert (await jobs.get("g1")).state == "failed"


async def test_without_resume_trainings_are_reported_too(jobs):
    await jobs.add(JobRecord.new("t1", "train", CONTEXT, {"subject": "cat"}, state="running"))
    seen = []

    async def report(record):
        seen.append(interrupted_text(record))

    await recover(jobs, "discord", report=report)
    assert seen == ["Sorry, the bot restarted while training `cat`; please run /train again."]


def test_the_message_names_the_prompt():
    record = JobRecord.new("g", "generate", CONTEXT, {"prompt_prefix": "a cat", "prompt_postfix": "in space"})
    assert "“a cat in space”" in interrupted_text(record) and "try again" in interrupted_text(record)


async def test_a_cancelled_generation_is_finished_and_never_reported_at_start(tmp_path):
    """The Cancel button's record (failed, cancelled) is an end: a restart has nothing to report."""
    from commands.context import RequestContext
    from commands.jobs import JobRecord, JobStore
    from commands.recovery import CANCELLED, recover

    jobs = JobStore(tmp_path / "jobs.sqlite3")
    try:
        await jobs.add(JobRecord.new("j1", "generate", RequestContext(front_end="discord"), {"prompt_prefix": "a"}))
        await jobs.update("j1", state="failed", error=CANCELLED)
        reported = []

        async def report(record):
            reported.append(record.job_id)

        outcome = await recover(jobs, "discord", report=report)
        record = await jobs.get("j1")
    finally:
        await jobs.close()
    assert reported == [] and outcome.reported == () and (record.state, record.error) == ("failed", CANCELLED)
