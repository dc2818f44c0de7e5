"""Recording "done" fails after the images were drawn: the member still gets them, and the record follows."""

from __future__ import annotations

import asyncio
import sqlite3

from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.context import RequestContext
from commands.generate import GenerateOptions
from tests.support.sleepy_gpu import SleepyGpu

CONTEXT = RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7", channel_id="8",
                         interaction_id="99")


async def test_a_store_locked_when_done_is_recorded_still_returns_the_images_and_records_them_later(tmp_path):
    settings = BotSettings(_env_file=None, DATA_DIR=tmp_path / "data", WANDB_MODE="disabled", GPU_CONCURRENCY=1)
    gpu = SleepyGpu()
    gpu.gate = asyncio.Event()
    services = make_app_services(settings, gpu)
    services.jobs.busy_timeout_s = 1.0  # long enough for the retry to outlast the lock, short for the first try
    other: sqlite3.Connection | None = None
    try:
        admission = services.qwerty.admit(GenerateOptions(prompt_prefix="a painting of a", count=2), CONTEXT)
        running = asyncio.create_task(services.qwerty.run(admission))
        while not gpu.generated:  # the job is recorded "running" and the GPU is drawing
            await asyncio.sleep(0.01)
        other = sqlite3.connect(services.jobs.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing when "done" is recorded
        gpu.gate.set()
        generation = await asyncio.wait_for(running, 30)
        other.execute("COMMIT")
        assert len(generation.result.images) == 2
        assert services.queue.in_flight("42") == 0
        await services.jobs.close()  # waits for the retry
        reopened = type(services.jobs)(services.jobs.path)
        record = await reopened.get(admission.job_id)
        await reopened.close()
        assert record.state == "done" and record.result["row_ids"] == [generation.row_id(0), generation.row_id(1)]
    finally:
        if other is not None:
            other.close()
        await services.close()
