"""On start, jobs left unfinished are resumed (trainings) or reported in their channel: never lost."""

from __future__ import annotations

import io

from PIL import Image

from bot.wiring import make_app_services
from commands.context import RequestContext
from commands.permissions import Caller
from commands.jobs import JobRecord
from commands.train import TrainOptions
from gpu_service.schemas import ImageSource
from tests.bot.conftest import bot_settings, eventually, running_bot
from tests.support.sleepy_gpu import SleepyGpu

USER = "7777777777777777777"


def photo(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (seed * 70 % 256, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


async def leave_unfinished_jobs(settings, channel_id: str) -> tuple[str, str]:
    """What a bot killed mid-work leaves in its store: a running generation and a running training."""
    context = RequestContext(front_end="discord", user_id=USER, user_name="ana", channel_id=channel_id)
    app = make_app_services(settings, SleepyGpu())
    try:
        await app.jobs.add(JobRecord.new("gen1", "generate", context, {"prompt_prefix": "a cat"}, state="running"))
        images = tuple(ImageSource(data=photo(i), name=f"{i}.png") for i in range(3))
        async with app.training.preparing(TrainOptions(attachments=images), context, Caller.local_operator()) as prepared:
            pass  # killed before the training could start
        await app.jobs.update(prepared.job_id, state="running", call_id="fc-123")
        return "gen1", prepared.job_id
    finally:
        await app.close()


async def test_a_restart_reports_lost_generations_and_resumes_trainings(stub, tmp_path):
    settings = bot_settings(tmp_path / "data")
    generation_id, training_id = await leave_unfinished_jobs(settings, stub.channel_id)
    gpu = SleepyGpu()
    async with running_bot(stub, settings, gpu) as bot:
        sorry = await stub.messages.wait_for(lambda s: "restarted" in (s.content or ""), timeout=10)
        assert sorry.content.startswith(f"<@{USER}> Sorry, the bot restarted while your /qwerty (“a cat”)")
        assert sorry.channel_id == stub.channel_id
        assert sorry.payload["allowed_mentions"] == {"parse": [], "users": [int(USER)]}  # only them

        done = await stub.messages.wait_for(lambda s: "finished" in (s.content or ""), timeout=10)
        assert "`qwerty` v1 is live" in done.content
        [(request, call_id)] = gpu.resumed
        assert (request.job_id, call_id) == (training_id, "fc-123")

        async def states():
            return {r.job_id: r.state for r in await bot.app.jobs.all()}

        assert await eventually(lambda: _is(states(), {generation_id: "failed", training_id: "done"}))


async def _is(value, expected):
    return (await value) == expected
