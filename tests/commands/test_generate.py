"""The generation use case end to end on the tiny model: validation, the local client, W&B read back."""

from __future__ import annotations

import asyncio
import io
import logging
import time

import pytest
from PIL import Image

from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.context import RequestContext
from commands.generate import GenerateOptions
from commands.wandb_log import TABLE_KEY, WandbConfig, WandbGenerationLog
from gpu_service.errors import InvalidRequest
from tests.support.wandb_offline import read_offline_runs

CONTEXT = RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7", channel_id="8",
                         interaction_id="99", message_link="https://discord.com/channels/7/8/100")


def app_settings(settings) -> BotSettings:
    return BotSettings(_env_file=None, **settings.model_dump())


@pytest.fixture
async def services(settings):
    services = make_app_services(app_settings(settings))
    yield services
    await services.close()


async def test_generation_is_logged_to_wandb_with_prompt_pixels_and_context(services, settings):
    options = GenerateOptions(prompt_prefix="a gorgeous painting of a", prompt_postfix="in space", seed=5,
                              count=2, steps=3)
    generation = await services.qwerty.generate(options, CONTEXT)
    services.generation_log.close()

    [run] = read_offline_runs(settings.wandb_dir)
    assert run.job_type == "generate"
    rows = run.table_rows(TABLE_KEY)
    assert [row["row_id"] for row in rows] == [generation.row_id(0), generation.row_id(1)]
    for row, image in zip(rows, generation.result.images):
        assert row["prompt"] == "a gorgeous painting of a qwerty dog in space"
        assert row["seed"] == image.seed and row["steps"] == 3 and row["user_id"] == "42"
        assert row["message_link"] == CONTEXT.message_link and row["lora_artifact"] == ""
        sent = Image.open(io.BytesIO(image.png)).convert("RGB")
        assert row["image"].convert("RGB").tobytes() == sent.tobytes()


async def test_rows_accumulate_across_generations(services, settings):
    for seed in (1, 2, 3):
        await services.qwerty.generate(GenerateOptions(prompt_prefix="a", seed=seed, steps=2), CONTEXT)
    services.generation_log.close()
    [run] = read_offline_runs(settings.wandb_dir)
    assert [row["seed"] for row in run.table_rows(TABLE_KEY)] == [1, 2, 3]


async def test_bad_option_is_refused_before_the_gpu_is_called(services):
    calls = []
    services.qwerty.client = type("Spy", (), {"generate": lambda *a: calls.append(a)})()
    with pytest.raises(InvalidRequest, match="`count`"):
        await services.qwerty.generate(GenerateOptions(prompt_prefix="a", count=9), CONTEXT)
    assert calls == []


async def test_wandb_failure_never_breaks_generation_and_is_reported_once(settings, tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where W&B wants a directory")
    services = make_app_services(app_settings(settings))
    services.generation_log = WandbGenerationLog(WandbConfig(project="p", mode="offline", directory=blocker))
    services.qwerty.log = services.generation_log
    caplog.set_level(logging.ERROR, logger="commands.wandb_log")
    try:
        for seed in (1, 2):
            generation = await services.qwerty.generate(
                GenerateOptions(prompt_prefix="a", seed=seed, steps=2), CONTEXT
            )
            assert generation.result.images[0].png
        services.generation_log.flush()
    finally:
        await services.close()
    assert len([r for r in caplog.records if "W&B logging failed" in r.message]) == 1


async def test_the_event_loop_keeps_running_while_the_gpu_works(services):
    await services.gpu.start()
    ticks = []

    async def ticker():
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    await services.qwerty.generate(GenerateOptions(prompt_prefix="a", steps=8, count=4, seed=1), CONTEXT)
    ticking.cancel()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 5 and max(gaps) < 0.25


async def test_pipeline_is_loaded_once_and_kept_warm(services):
    await services.qwerty.generate(GenerateOptions(prompt_prefix="a", steps=2), CONTEXT)
    first = services.gpu.service._generator
    await services.qwerty.generate(GenerateOptions(prompt_prefix="b", steps=2), CONTEXT)
    assert services.gpu.service._generator is first and (await services.gpu.status()).warm


async def test_progress_reaches_the_caller_on_the_loop_thread(services):
    import threading

    seen = []
    await services.qwerty.generate(
        GenerateOptions(prompt_prefix="a", steps=3), CONTEXT,
        lambda update: seen.append((update.step, threading.current_thread() is threading.main_thread())),
    )
    await asyncio.sleep(0)
    assert seen == [(1, True), (2, True), (3, True)]


async def test_community_events_are_logged_against_the_row_id(services, settings):
    from commands.wandb_log import EVENTS_KEY, CommunityEvent

    generation = await services.qwerty.generate(GenerateOptions(prompt_prefix="a", steps=2), CONTEXT)
    services.generation_log.log_event(CommunityEvent("share", generation.row_id(0), "42", "7"))
    services.generation_log.log_event(CommunityEvent("vote", generation.row_id(0), "43", "7", detail="1"))
    services.generation_log.close()
    [run] = read_offline_runs(settings.wandb_dir)
    events = run.table_rows(EVENTS_KEY)
    assert [(e["event"], e["row_id"], e["user_id"]) for e in events] == [
        ("share", generation.row_id(0), "42"), ("vote", generation.row_id(0), "43")]
    assert all(e["at"] for e in events)


def test_rows_name_the_lora_artifact_that_drew_them(tmp_path):
    from commands.generate import Generation
    from gpu_service.schemas import GeneratedImage, GenerateRequest, GenerateResult

    result = GenerateResult(
        prompt="a photo of a qwerty dog", negative_prompt="", model="base", subject="qwerty", version=2,
        base_fallback=False, steps=3, guidance=7.5, width=64, height=64,
        images=(GeneratedImage(index=0, seed=1, png=None, withheld=True),),
    )
    request = GenerateRequest(prompt_prefix="a photo of a", subject="qwerty")
    log = WandbGenerationLog(WandbConfig(project="p", mode="offline", directory=tmp_path))
    log.log_generation(Generation("g1", request, result, CONTEXT))
    log.close()
    [run] = read_offline_runs(tmp_path)
    [row] = run.table_rows(TABLE_KEY)
    assert (row["lora_artifact"], row["version"], row["withheld"], row["image"]) == (
        "lora-qwerty:version-2", 2, True, None)
