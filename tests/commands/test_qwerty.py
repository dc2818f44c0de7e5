"""The /qwerty use case as front ends call it: admission, the queue, job records, W&B rows after the reply."""

from __future__ import annotations

import asyncio

import pytest

from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.context import RequestContext
from commands.generate import GenerateOptions
from commands.qwerty import Queued, Rendering
from commands.queue import LimitReached
from commands.wandb_log import TABLE_KEY
from gpu_service.errors import GpuTimeout, InvalidRequest, RemoteError
from tests.support.sleepy_gpu import SleepyGpu
from tests.support.wandb_offline import read_offline_runs

CONTEXT = RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7", channel_id="8",
                         interaction_id="99")


def settings_for(tmp_path, **overrides) -> BotSettings:
    values = dict(DATA_DIR=tmp_path / "data", WANDB_MODE="disabled", GPU_CONCURRENCY=1)
    values.update(overrides)
    return BotSettings(_env_file=None, **values)


@pytest.fixture
async def app(tmp_path):
    gpu = SleepyGpu()
    services = make_app_services(settings_for(tmp_path), gpu)
    yield services, gpu
    await services.close()


async def test_a_generation_is_queued_run_and_recorded(app):
    services, gpu = app
    admission = services.qwerty.admit(GenerateOptions(prompt_prefix="a painting of a", count=2, steps=3), CONTEXT)
    updates = []
    generation = await services.qwerty.run(admission, updates.append)
    assert len(generation.result.images) == 2 and generation.generation_id == admission.job_id
    assert updates == [Rendering(1, 3), Rendering(2, 3), Rendering(3, 3)]  # ran at once: no queue position
    record = await services.jobs.get(admission.job_id)
    assert record.state == "done" and record.kind == "generate" and record.user_id == "42"
    assert record.request["prompt_prefix"] == "a painting of a" and record.request["count"] == 2
    assert record.result["row_ids"] == [generation.row_id(0), generation.row_id(1)]
    assert services.queue.in_flight("42") == 0


async def test_bad_options_and_limits_are_refused_at_admission_before_anything_runs(app):
    services, gpu = app
    with pytest.raises(InvalidRequest, match="count"):
        services.qwerty.admit(GenerateOptions(prompt_prefix="a", count=9), CONTEXT)
    for _ in range(4):
        services.qwerty.admit(GenerateOptions(prompt_prefix="a"), CONTEXT)
    with pytest.raises(LimitReached):
        services.qwerty.admit(GenerateOptions(prompt_prefix="a"), CONTEXT)
    assert gpu.generated == [] and await services.jobs.all() == []


async def test_a_waiting_request_reports_its_queue_position(app):
    services, gpu = app
    gpu.gate = asyncio.Event()
    first = services.qwerty.admit(GenerateOptions(prompt_prefix="a"), CONTEXT)
    second = services.qwerty.admit(GenerateOptions(prompt_prefix="b"), RequestContext("discord", user_id="7"))
    updates = []
    tasks = [asyncio.create_task(services.qwerty.run(first)),
             asyncio.create_task(services.qwerty.run(second, updates.append))]
    await asyncio.sleep(0.05)
    assert updates == [Queued(1)]
    assert (await services.jobs.get(second.job_id)).state == "queued"
    gpu.gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert isinstance(updates[-1], Rendering)


async def test_a_failed_generation_is_recorded_as_failed_and_frees_the_place(app):
    services, gpu = app
    gpu.fail_with = RemoteError("The image engine failed (OOM).")
    admission = services.qwerty.admit(GenerateOptions(prompt_prefix="a"), CONTEXT)
    with pytest.raises(RemoteError):
        await services.qwerty.run(admission)
    record = await services.jobs.get(admission.job_id)
    assert record.state == "failed" and "OOM" in record.error
    assert services.queue.in_flight("42") == 0


async def test_a_generation_over_its_time_limit_is_a_timeout(tmp_path):
    gpu = SleepyGpu()
    gpu.gate = asyncio.Event()  # never set
    services = make_app_services(settings_for(tmp_path, GENERATION_TIMEOUT_S=0.05), gpu)
    try:
        admission = services.qwerty.admit(GenerateOptions(prompt_prefix="a"), CONTEXT)
        with pytest.raises(GpuTimeout):
            await services.qwerty.run(admission)
        assert (await services.jobs.get(admission.job_id)).state == "failed"
    finally:
        await services.close()


async def test_wandb_rows_are_written_after_the_reply_with_its_message_link(tmp_path):
    settings = settings_for(tmp_path, WANDB_MODE="offline")
    services = make_app_services(settings, SleepyGpu())
    try:
        admission = services.qwerty.admit(GenerateOptions(prompt_prefix="a", count=2, seed=5), CONTEXT)
        generation = await services.qwerty.run(admission)
        link = "https://discord.com/channels/7/8/123"
        await services.qwerty.finish(generation, "123", link)
    finally:
        await services.close()
    [run] = read_offline_runs(settings.wandb_dir)
    rows = run.table_rows(TABLE_KEY)
    assert [row["seed"] for row in rows] == [5, 6]
    for row in rows:
        assert (row["message_link"], row["guild_id"], row["channel_id"], row["user_id"], row["interaction_id"]) == (
            link, "7", "8", "42", "99")


async def test_refused_prompts_are_logged_to_wandb_with_the_reason_and_no_image(tmp_path):
    """A banned word, a bad option and the per-member limit each leave a row in `refused_prompts`."""
    from commands.errors import MemberError
    from commands.wandb_log import REFUSALS_KEY

    settings = settings_for(tmp_path, WANDB_MODE="offline")
    services = make_app_services(settings, SleepyGpu())
    qwerty = services.qwerty
    try:
        await services.community.add_banned_words("7", ["forbidden"])
        refused = [GenerateOptions(prompt_prefix="a forbidden thing"), GenerateOptions(prompt_prefix="a", count=9)]
        for options in refused:
            with pytest.raises(Exception):
                qwerty.admit(options, CONTEXT)
        held = [qwerty.admit(GenerateOptions(prompt_prefix=f"ok {n}"), CONTEXT) for n in range(4)]
        with pytest.raises(MemberError):
            qwerty.admit(GenerateOptions(prompt_prefix="one too many", negative_prompt="blur"), CONTEXT)
        for admission in held:
            admission.cancel()
    finally:
        await services.close()
    [run] = read_offline_runs(settings.wandb_dir)
    rows = run.table_rows(REFUSALS_KEY)
    assert [row["prompt_prefix"] for row in rows] == ["a forbidden thing", "a", "one too many"]
    assert "forbidden" in rows[0]["reason"] and "`count`" in rows[1]["reason"]
    assert rows[2]["reason"].startswith("LimitReached") and rows[2]["negative_prompt"] == "blur"
    assert all((row["user_id"], row["guild_id"], row["interaction_id"]) == ("42", "7", "99") for row in rows)
    assert "image" not in rows[0]
    with pytest.raises(KeyError):  # nothing was generated
        run.table_rows(TABLE_KEY)
