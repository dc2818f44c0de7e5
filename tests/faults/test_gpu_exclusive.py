"""The local engine trains one job at a time, whatever the subject: a second training next to the first and
the warm pipeline would not fit in one GPU; it is refused at once with a sentence, and nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from gpu_service.errors import GpuBusy
from gpu_service.local_client import LocalGpuClient
from gpu_service.schemas import GenerateRequest
from tests.conftest import make_settings
from tests.faults.test_lora_faults import flip_a_byte, weights
from tests.gpu_service.test_adapters import publish_random_lora
from tests.gpu_service.test_local_training import train_request


@pytest.fixture
async def client(tmp_path, tiny_model_dir):
    settings = make_settings(tmp_path / "data", tiny_model_dir, TRAIN_STEPS=2, TRAIN_CLASS_IMAGES=1,
                             TRAIN_CHECKPOINT_EVERY=2)
    client = LocalGpuClient(settings)
    yield client
    await client.close()


@pytest.mark.slow
async def test_a_second_training_of_another_subject_is_refused_while_one_runs(client):
    first = asyncio.create_task(client.train(train_request("job-a", subject="qwerty")))
    await asyncio.sleep(0)  # the first one has the GPU
    with pytest.raises(GpuBusy) as refused:
        await client.train(train_request("job-b", subject="rex", instance_phrase="rex dog"))
    assert str(refused.value) == "The GPU is busy with another training; try again when it has finished."
    # Members keep generating meanwhile, and the first training finishes and goes live.
    generated = await client.generate(GenerateRequest(prompt_prefix="a photo of a", subject="qwerty", seed=1, steps=2))
    assert generated.images
    assert (await first).version.version == 1
    await asyncio.sleep(0)  # the engine thread hands the GPU back on the loop
    second = await client.train(train_request("job-b", subject="rex", instance_phrase="rex dog"))
    assert (second.version.subject, second.version.version) == ("rex", 1)


async def test_status_lists_a_damaged_version_the_engine_set_aside(client, tiny_model_dir):
    publish_random_lora(client.registry, tiny_model_dir, "rex", "rex dog", seed=1)
    publish_random_lora(client.registry, tiny_model_dir, "rex", "rex dog", seed=2)
    flip_a_byte(weights(client.registry, 2))
    await client.start()
    status = await client.status()
    assert status.bad_versions == ("rex v2: checksum mismatch",)
