"""Stopping a generation nobody waits for: the engine checks a cancel flag at every step."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gpu_service.engine.generator import BatchItem
from gpu_service.local_client import LocalGpuClient
from gpu_service.schemas import GenerateRequest, GenerationProgress
from tests.gpu_service.test_generator import load_generator


def unet_calls(pipe) -> list[int]:
    """One entry per UNet forward pass: what a step costs, and what a stopped render no longer spends."""
    calls: list[int] = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    return calls


def request(**fields) -> GenerateRequest:
    return GenerateRequest(**{"prompt_prefix": "a painting of a", "subject": "qwerty", "steps": 20, **fields})


@pytest.fixture(scope="module")
def generator(tiny_model_dir, tmp_path_factory):
    return load_generator(tiny_model_dir, tmp_path_factory.mktemp("registry"))


def test_a_cancel_flag_set_mid_render_stops_the_pipeline_at_the_next_step(generator):
    calls = unet_calls(generator.pipe)
    cancel = threading.Event()
    steps: list[int] = []

    def on_progress(progress: GenerationProgress) -> None:
        steps.append(progress.step)
        if progress.step == 3:
            cancel.set()

    generator.generate_batch([BatchItem(request(seed=1), on_progress, cancel=cancel)])
    assert steps == [1, 2, 3] and len(calls) == 3  # 17 of the 20 steps never ran
    after = generator.generate(request(seed=1, steps=4), lambda p: steps.append(p.step))
    assert steps[3:] == [1, 2, 3, 4] and len(after.images) == 1  # the pipeline is usable again


def test_a_cancelled_request_does_not_stop_its_batch_companion(generator):
    cancel = threading.Event()
    cancel.set()
    kept: list[int] = []
    outcomes = generator.generate_batch([
        BatchItem(request(seed=1), lambda p: None, cancel=cancel),
        BatchItem(request(seed=2), lambda p: kept.append(p.step)),
    ])
    assert kept == list(range(1, 21)) and outcomes[1].images[0].png


def test_previews_come_every_few_steps_as_pngs(generator):
    previews: list[tuple[int, bytes]] = []

    def on_progress(progress: GenerationProgress) -> None:
        if progress.preview_png is not None:
            previews.append((progress.step, progress.preview_png))

    generator.generate(request(seed=3, steps=10), on_progress, previews=True)
    assert [step for step, _ in previews] == [5, 10]
    assert all(png.startswith(b"\x89PNG") for _, png in previews)


async def test_the_local_client_stops_rendering_when_its_caller_is_cancelled(settings):
    client = LocalGpuClient(settings)
    await client.start()
    calls = unet_calls(client.service.load().pipe)
    steps: list[int] = []
    third = asyncio.Event()

    def on_progress(progress: GenerationProgress) -> None:
        steps.append(progress.step)
        if progress.step == 3:
            third.set()

    try:
        waiting = asyncio.create_task(client.generate(request(steps=100), on_progress))
        await asyncio.wait_for(third.wait(), 60)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        result = await client.generate(request(steps=2))  # runs only after the cancelled render ended
        assert len(result.images) == 1 and len(calls) < 100 - 2
    finally:
        await client.close()
