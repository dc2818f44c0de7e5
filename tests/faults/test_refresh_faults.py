"""A version list that cannot be refreshed in time never pins a request to a version rolled back from."""

from __future__ import annotations

import asyncio

import pytest

from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.context import RequestContext
from commands.generate import GenerateOptions
from commands.subjects import SubjectCatalog
from gpu_service.schemas import ImageSource, TrainRequest
from tests.support.sleepy_gpu import SleepyGpu
from commands.permissions import Caller

OPERATOR = Caller.local_operator()

CONTEXT = RequestContext(front_end="shell", user_id="42", user_name="ana")


class HangingListGpu(SleepyGpu):
    """Answers a listing only after `list_delay_s`, with the versions as they were when it was asked: a
    registry that stalls."""

    def __init__(self) -> None:
        super().__init__()
        self.list_delay_s = 0.0

    async def list_versions(self, subject=None):
        asked = await super().list_versions(subject)
        await asyncio.sleep(self.list_delay_s)
        return asked


def train(job_id: str) -> TrainRequest:
    return TrainRequest(job_id=job_id, subject="qwerty", instance_phrase="qwerty dog", class_phrase="dog",
                        images=(ImageSource(name="a.png"),))


@pytest.fixture
async def app(tmp_path):
    gpu = HangingListGpu()
    settings = BotSettings(_env_file=None, DATA_DIR=tmp_path / "data", WANDB_MODE="disabled")
    services = make_app_services(settings, gpu)
    services.subjects.timeout_s = 0.2
    yield services, gpu
    await services.close()


async def test_after_a_rollback_a_stalled_refresh_leaves_the_live_version_to_the_gpu_side(app):
    services, gpu = app
    await gpu.train(train("j1"))
    await gpu.train(train("j2"))
    options = GenerateOptions(prompt_prefix="a photo of a", steps=2, seed=1)
    first = await services.qwerty.generate(options, CONTEXT)
    assert (gpu.generated[-1].subject_version, first.result.version) == (2, 2)

    await services.admin.rollback(OPERATOR, "qwerty")  # v1 live; the catalog is invalidated
    gpu.list_delay_s = 5.0  # every listing from now on outlasts the catalog's time limit
    after = await services.qwerty.generate(options, CONTEXT)

    assert gpu.generated[-1].subject_version is None  # not the stale v2
    assert after.result.version == 1


async def test_a_refresh_that_began_before_an_invalidation_does_not_make_its_list_current():
    gpu = HangingListGpu()
    await gpu.train(train("j1"))
    await gpu.train(train("j2"))
    catalog = SubjectCatalog(gpu, ttl_s=60, timeout_s=5)
    gpu.list_delay_s = 0.2
    lookup = asyncio.create_task(catalog.live_version("qwerty"))
    await asyncio.sleep(0.05)  # the listing is in flight with v2 live
    await gpu.activate("qwerty", 1)
    catalog.invalidate()
    assert await lookup is None
    gpu.list_delay_s = 0.0
    assert await catalog.live_version("qwerty") == 1
