"""Variations and /rollback on the real engine (the tiny model, in process), through the real
discord.py client: the pictures themselves show what happened."""

from __future__ import annotations

import pytest

from gpu_service.demo_images import draw_subject
from gpu_service.schemas import ImageSource, TrainRequest
from tests.bot.conftest import ADMIN_ID, bot_settings, running_bot
from tests.bot.helpers import SELECT, click, is_answer, job_of, qwerty, seeds_of

pytestmark = pytest.mark.slow


@pytest.fixture
async def local_bot(stub, tmp_path, tiny_model_dir):
    from gpu_service.local_client import LocalGpuClient

    settings = bot_settings(tmp_path / "data", tiny_model_dir, TRAIN_STEPS=4, TRAIN_CLASS_IMAGES=2,
                            TRAIN_CHECKPOINT_EVERY=2)
    gpu = LocalGpuClient(settings)
    async with running_bot(stub, settings, gpu) as bot:
        yield bot


def photos() -> tuple[ImageSource, ...]:
    from gpu_service.engine.generator import encode_png

    return tuple(ImageSource(data=encode_png(draw_subject(seed)), name=f"p{seed}.png") for seed in range(3))


async def test_variations_differ_from_a_fresh_generation_with_the_same_seed(local_bot, stub):
    first = await qwerty(stub, {"prompt_prefix": "a painting of a", "seed": 5, "count": 2, "steps": 4})
    job = job_of(first)
    menu = await (await click(stub, first.message_id, f"sq:var:{job}")).wait_ack()
    picked = await click(stub, menu.message_id, f"sq:var:{job}", component_type=SELECT, values=["0"])
    varied = await picked.responses.wait_for(is_answer, timeout=60)
    [seed, _] = seeds_of(varied.content)
    fresh = await qwerty(stub, {"prompt_prefix": "a painting of a", "seed": seed, "count": 2, "steps": 4})
    assert seeds_of(fresh.content)[0] == seed
    assert varied.files[0].data != fresh.files[0].data  # image-to-image from image 0, not text-to-image
    assert varied.files[0].data != first.files[0].data


async def test_after_a_rollback_the_next_qwerty_draws_with_the_earlier_version(local_bot, stub):
    gpu = local_bot.app.gpu
    ask = {"prompt_prefix": "a photo of a", "seed": 9, "steps": 4}
    await gpu.train(TrainRequest(job_id="first", subject="qwerty", instance_phrase="qwerty dog",
                                 class_phrase="dog", images=photos(), steps=4))
    local_bot.app.subjects.invalidate()
    with_v1 = await qwerty(stub, ask)
    await gpu.train(TrainRequest(job_id="second", subject="qwerty", instance_phrase="qwerty dog",
                                 class_phrase="dog", images=photos(), steps=8))
    local_bot.app.subjects.invalidate()
    with_v2 = await qwerty(stub, ask)
    assert "qwerty v1" in with_v1.content and "qwerty v2" in with_v2.content
    assert with_v1.files[0].data != with_v2.files[0].data
    rollback = await stub.slash_command("rollback", {"subject": "qwerty", "version": 1}, user_id=ADMIN_ID)
    done = await rollback.responses.wait_for(lambda s: s.kind == "edit", timeout=30)
    assert "v1 is live now (was v2)" in done.content
    after = await qwerty(stub, ask)
    assert "qwerty v1" in after.content and after.files[0].data == with_v1.files[0].data
