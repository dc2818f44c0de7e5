"""Training through the local client: intake, DreamBooth LoRA, publish, and the new version live at once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gpu_service.demo_images import draw_subject
from gpu_service.errors import GpuBusy, IntakeError
from gpu_service.local_client import LocalGpuClient
from gpu_service.schemas import GenerateRequest, ImageSource, TrainRequest
from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def photos(count: int = 3) -> tuple[ImageSource, ...]:
    from gpu_service.engine.generator import encode_png

    return tuple(ImageSource(data=encode_png(draw_subject(seed)), name=f"p{seed}.png") for seed in range(count))


def train_request(job_id: str = "job-1", **fields) -> TrainRequest:
    values = dict(job_id=job_id, subject="qwerty", instance_phrase="qwerty dog", class_phrase="dog",
                  images=photos(), requested_by="ana")
    return TrainRequest(**{**values, **fields})


@pytest.fixture
async def client(tmp_path, tiny_model_dir):
    settings = make_settings(tmp_path / "data", tiny_model_dir, TRAIN_STEPS=4, TRAIN_CLASS_IMAGES=2,
                             TRAIN_CHECKPOINT_EVERY=2)
    client = LocalGpuClient(settings)
    yield client
    await client.close()


async def test_trained_version_goes_live_for_the_next_generation(client):
    ask = GenerateRequest(prompt_prefix="a photo of a", subject="qwerty", seed=3, steps=3)
    before = await client.generate(ask)
    progress = []
    result = await client.train(train_request(), progress.append)
    await asyncio.sleep(0)
    assert result.version.version == 1 and result.version.active and result.version.trained_by == "ana"
    assert {p.state for p in progress} >= {"training", "done"}
    after = await client.generate(ask)
    assert before.base_fallback and (after.version, after.base_fallback) == (1, False)
    assert after.images[0].png != before.images[0].png
    assert [v.version for v in await client.list_versions("qwerty")] == [1]


async def test_a_second_training_of_the_same_subject_is_refused_while_one_runs(client):
    first = asyncio.create_task(client.train(train_request("job-a")))
    await asyncio.sleep(0)
    with pytest.raises(GpuBusy, match="qwerty"):
        await client.train(train_request("job-b"))
    await first


async def test_too_few_usable_images_fail_before_training_with_every_reason(client):
    bad = (ImageSource(data=b"<html>no</html>", name="page.html"),) + photos(2)
    with pytest.raises(IntakeError, match="page.html"):
        await client.train(train_request(images=bad))
    assert await client.list_versions("qwerty") == []


async def test_a_finished_job_replayed_returns_its_version_without_fetching_images(client):
    first = await client.train(train_request("job-r"))
    expired = tuple(ImageSource(url=f"http://127.0.0.1:9/gone-{i}.png") for i in range(3))
    again = await client.train(train_request("job-r", images=expired))
    assert again.version.version == first.version.version == 1
    assert len(await client.list_versions("qwerty")) == 1


async def test_the_subject_stays_taken_until_a_cancelled_training_really_ends(client):
    waiting = asyncio.create_task(client.train(train_request("job-c")))
    await asyncio.sleep(0.5)
    waiting.cancel()
    with pytest.raises(GpuBusy):
        await client.train(train_request("job-d"))
    for _ in range(600):  # the thread finishes the job it started
        if "qwerty" not in client.training_leases:
            break
        await asyncio.sleep(0.1)
    assert [v.version for v in await client.list_versions("qwerty")] == [1]


async def test_a_rollback_makes_the_version_live_and_asks_wandb_to_move_its_live_alias(client, caplog):
    """Offline there is nothing on W&B to move: the activation says so in the log and still succeeds."""
    await client.train(train_request("job-1"))
    await client.train(train_request("job-2"))
    caplog.set_level(logging.INFO, logger="gpu_service.engine.train_wandb")
    chosen = await client.activate("qwerty", 1)
    assert chosen.active and chosen.version == 1
    assert any("live alias stays where it was (qwerty v1" in record.message for record in caplog.records)
