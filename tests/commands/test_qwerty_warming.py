"""A /qwerty that meets a cold Modal service: the member reads the warming line, then the steps, then gets images."""

from __future__ import annotations

from types import SimpleNamespace

from bot.render import queue_update
from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.context import RequestContext
from commands.generate import GenerateOptions
from commands.qwerty import Rendering, Warming
from gpu_service.modal_client import DEFAULT_COLD_START_S, ModalGpuClient
from tests.gpu_service.test_modal_client import FakeApp, aio, slow_start

CONTEXT = RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7", channel_id="8")


async def no_versions(subject=None):
    return []


async def test_a_member_sees_the_gpu_warm_up_and_the_first_call_outlives_the_call_timeout(tmp_path):
    fake = FakeApp()
    fake.functions["list_versions"] = SimpleNamespace(remote=aio(no_versions))
    slow_start(fake, start_up_s=0.5)  # longer than MODAL_CALL_TIMEOUT_S below
    settings = BotSettings(_env_file=None, DATA_DIR=tmp_path / "data", WANDB_MODE="disabled", GPU_BACKEND="modal",
                           MODAL_CALL_TIMEOUT_S=0.2, MODAL_COLD_START_TIMEOUT_S=10)
    services = make_app_services(settings, ModalGpuClient(settings, lookup=fake))
    try:
        updates = []
        generation = await services.qwerty.run(
            services.qwerty.admit(GenerateOptions(prompt_prefix="a painting of a", seed=7), CONTEXT), updates.append
        )
    finally:
        await services.close()
    assert generation.result.images[0].seed == 7
    assert updates[0] == Warming(round(DEFAULT_COLD_START_S))
    assert queue_update(updates[0]) == f"Warming up the GPU (about {DEFAULT_COLD_START_S:.0f} s)…"
    assert [type(update) for update in updates[1:]] == [Rendering, Rendering]
