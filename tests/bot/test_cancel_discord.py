"""The Cancel button and the live preview on a /qwerty's progress message, through the loopback Discord."""

from __future__ import annotations

import asyncio

import pytest

from bot import custom_ids
from commands.recovery import CANCELLED
from tests.bot.conftest import bot_settings, eventually, running_bot
from tests.support.sleepy_gpu import SleepyGpu

REQUESTER, OTHER = 1111, 2222


def with_cancel(sent) -> bool:
    return sent.kind == "edit" and "sq:cancel:" in str(sent.payload.get("components"))


def cancel_id(sent) -> str:
    [button] = [c for row in sent.payload["components"] for c in row["components"]]
    assert custom_ids.decode(button["custom_id"]).action is custom_ids.Action.CANCEL
    return button["custom_id"]


async def test_a_queued_request_cancelled_by_its_requester_leaves_the_queue_and_frees_the_slot(stub, tmp_path):
    gpu = SleepyGpu()
    settings = bot_settings(tmp_path / "data", GPU_CONCURRENCY=1)
    async with running_bot(stub, settings, gpu) as bot:
        gpu.gate = asyncio.Event()
        first = await stub.slash_command("qwerty", {"prompt_prefix": "first"}, user_id=OTHER)
        await first.wait_ack()
        queued = await stub.slash_command("qwerty", {"prompt_prefix": "second"}, user_id=REQUESTER)
        progress = await queued.responses.wait_for(with_cancel, timeout=10)
        assert progress.content == "You are next…"
        queue = bot.app.qwerty.queue
        assert queue.in_flight(str(REQUESTER)) == 1

        stranger = await stub.click(progress.message_id, cancel_id(progress), user_id=OTHER)
        refusal = await stranger.wait_ack()
        assert refusal.ephemeral and "Only the member who asked" in refusal.content
        assert queue.in_flight(str(REQUESTER)) == 1

        click = await stub.click(progress.message_id, cancel_id(progress), user_id=REQUESTER)
        assert (await click.wait_ack()).callback_type == 6
        said = await click.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
        assert (said.message_id, said.content, said.payload["components"]) == (progress.message_id, "Cancelled.", [])
        assert queue.in_flight(str(REQUESTER)) == 0 and queue.waiting_count == 0

        async def cancelled_record():
            records = {r.interaction_id: r for r in await bot.app.jobs.all()}
            record = records.get(queued.id)
            return record if record and record.state == "failed" else None

        record = await eventually(cancelled_record)
        assert record.error == CANCELLED
        gpu.gate.set()
        await first.responses.wait_for(lambda s: s.kind == "followup", timeout=10)
        assert [r.prompt_prefix for r in gpu.generated] == ["first"]  # the cancelled one never rendered
        again = await stub.slash_command("qwerty", {"prompt_prefix": "again"}, user_id=REQUESTER)
        await again.responses.wait_for(lambda s: s.kind == "followup", timeout=10)


async def test_a_rendering_request_stops_and_says_cancelled(stub, tmp_path):
    gpu = SleepyGpu(delay_s=30.0)  # 30 s over its steps: it is rendering when the click comes
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu) as bot:
        interaction = await stub.slash_command("qwerty", {"prompt_prefix": "slow", "steps": 30}, user_id=REQUESTER)
        progress = await interaction.responses.wait_for(
            lambda s: with_cancel(s) and s.content.startswith("Rendering…"), timeout=10
        )
        click = await stub.click(progress.message_id, cancel_id(progress), user_id=REQUESTER)
        said = await click.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
        assert said.content == "Cancelled."
        assert gpu.running == 0 and bot.app.qwerty.queue.running_count == 0
        await asyncio.sleep(0.2)
        assert not [s for s in interaction.responses if s.kind == "followup"]


async def test_after_a_restart_the_button_still_answers_that_the_request_is_no_longer_running(stub, tmp_path):
    settings = bot_settings(tmp_path / "data")
    async with running_bot(stub, settings, SleepyGpu(delay_s=30.0)):
        interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a", "steps": 30}, user_id=REQUESTER)
        progress = await interaction.responses.wait_for(with_cancel, timeout=10)
    async with running_bot(stub, settings, SleepyGpu()):
        click = await stub.click(progress.message_id, cancel_id(progress), user_id=REQUESTER)
        answer = await click.wait_ack()
        assert answer.ephemeral and answer.content == "This request is no longer running."


async def test_the_progress_edit_carries_the_engines_preview_image(stub, tmp_path):
    gpu = SleepyGpu(delay_s=3.0)
    gpu.preview_every = 2
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu):
        interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a", "steps": 10}, user_id=REQUESTER)
        edit = await interaction.responses.wait_for(lambda s: s.kind == "edit" and s.files, timeout=10)
        [preview] = edit.files
        assert preview.filename == "preview.png" and preview.data.startswith(b"\x89PNG")
        assert edit.content.startswith("Rendering… step") and with_cancel(edit)
        await interaction.responses.wait_for(lambda s: s.kind == "followup", timeout=10)


@pytest.mark.slow
async def test_cancel_stops_the_tiny_model_mid_render_and_the_preview_shows_on_the_way(stub, tmp_path, tiny_model_dir):
    """End to end on the in-process engine: previews reach Discord, and Cancel stops the UNet early."""
    from gpu_service.local_client import LocalGpuClient

    settings = bot_settings(tmp_path / "data", tiny_model_dir)
    client = LocalGpuClient(settings)
    await client.start()
    calls: list[int] = []
    client.service.load().pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    async with running_bot(stub, settings, client):
        interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a", "steps": 100}, user_id=REQUESTER)
        progress = await interaction.responses.wait_for(lambda s: with_cancel(s) and s.files, timeout=60)
        assert progress.files[0].filename == "preview.png"
        click = await stub.click(progress.message_id, cancel_id(progress), user_id=REQUESTER)
        said = await click.responses.wait_for(lambda s: s.kind == "edit", timeout=30)
        assert said.content == "Cancelled."
        after = await stub.slash_command("qwerty", {"prompt_prefix": "b", "steps": 2}, user_id=REQUESTER)
        await after.responses.wait_for(lambda s: s.kind == "followup", timeout=60)
    assert len(calls) < 100  # the cancelled render never reached its last step
