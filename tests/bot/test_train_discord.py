"""/train through the real discord.py client: refused for non-admins, intake first, progress and the
result in the channel."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from tests.bot.conftest import ADMIN_ID, ADMINISTRATOR, MEMBER_ID, bot_settings, eventually, running_bot
from tests.support.discord_stub import UploadedFile
from tests.support.sleepy_gpu import SleepyGpu

DEFERRED, MESSAGE = 5, 4


def photo(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (72, 72), (seed * 50 % 256, 120, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def photos(count: int) -> dict[str, UploadedFile]:
    return {f"image{n + 1}": UploadedFile(f"dog{n}.png", photo(n), "image/png") for n in range(count)}


async def test_a_non_admin_is_refused_ephemerally_and_nothing_starts(bot, stub, gpu):
    interaction = await stub.slash_command("train", photos(3), user_id=MEMBER_ID, roles=["trainer"])
    ack = await interaction.wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral and "Only admins" in ack.content
    await asyncio.sleep(0.1)
    assert gpu.trained == [] and await bot.app.jobs.all() == [] and list(stub.messages) == []
    # default_permissions is only a hint to Discord's UI, and it is there.
    [train] = [c for c in bot.tree.get_commands() if c.name == "train"]
    assert train.default_permissions.administrator


async def test_an_admin_trains_progress_is_edited_and_the_result_posted_in_the_channel(bot, stub, gpu):
    options = {**photos(3), "urls": "", "steps": 4}
    interaction = await stub.slash_command("train", options, user_id=ADMIN_ID)
    assert (await interaction.wait_ack()).callback_type == DEFERRED
    started = await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    assert "Training `qwerty`" in started.content and "3 images" in started.content

    result = await stub.messages.wait_for(lambda s: s.kind == "create" and "finished" in (s.content or ""), timeout=10)
    assert "`qwerty` v1 is live" in result.content and "https://wandb.example/runs/" in result.content
    assert result.content.startswith(f"<@{ADMIN_ID}>")
    assert set(result.payload["allowed_mentions"]["parse"]) <= {"users"}  # the admin, never @everyone
    assert [f.content_type for f in result.files] == ["image/png"]
    [request] = gpu.trained
    assert [Image.open(io.BytesIO(i.data)).mode for i in request.images] == ["RGB"] * 3  # intake's PNGs
    status = stub.messages[0]
    assert status.kind == "create" and status.content.startswith("Training `qwerty`")
    edits = await stub.messages.wait_for(lambda s: s.kind == "edit" and "done, v1 is live" in s.content, timeout=5)
    progress = [s for s in stub.messages if s.kind == "edit" and s.message_id == status.message_id]
    assert progress[0].content.startswith("Training `qwerty`: training") and progress[-1] is edits
    assert await eventually(lambda: _state(bot, "done"))
    [record] = await bot.app.jobs.all()
    assert record.message_id == status.message_id and record.result["version"] == 1


@pytest.mark.parametrize("who", ["role", "administrator"])
async def test_admins_by_role_or_by_the_administrator_permission(stub, gpu, tmp_path, who):
    settings = bot_settings(tmp_path / "data", ADMIN_USER_IDS="", ADMIN_ROLE_IDS=stub.role_id("trainer"))
    async with running_bot(stub, settings, gpu):
        extra = {"roles": ["trainer"]} if who == "role" else {"permissions": ADMINISTRATOR}
        options = {**photos(3), "subject": "rex", "instance_phrase": "sks dog", "class_phrase": "dog"}
        interaction = await stub.slash_command("train", options, user_id=MEMBER_ID, **extra)
        assert (await interaction.wait_ack()).callback_type == DEFERRED
        await stub.messages.wait_for(lambda s: "finished" in (s.content or ""), timeout=10)


async def test_rejected_images_are_listed_with_their_reasons(bot, stub):
    options = {**photos(3), "image4": UploadedFile("notes.txt", b"hello, not a photo", "text/plain")}
    interaction = await stub.slash_command("train", options, user_id=ADMIN_ID)
    started = await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    assert "Skipped 1 image(s):" in started.content and "notes.txt" in started.content


async def test_too_few_images_are_refused_before_any_gpu_time_with_every_reason(bot, stub, gpu):
    options = {**photos(1), "image2": UploadedFile("page.html", b"<html></html>", "text/html")}
    interaction = await stub.slash_command("train", options, user_id=ADMIN_ID)
    answer = await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    assert "at least 3 are needed" in answer.content and "page.html" in answer.content
    assert gpu.trained == [] and await bot.app.jobs.all() == []


async def test_one_training_per_subject_at_a_time(bot, stub, gpu):
    gpu.gate = asyncio.Event()
    first = await stub.slash_command("train", photos(3), user_id=ADMIN_ID)
    await first.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    second = await stub.slash_command("train", photos(3), user_id=ADMIN_ID)
    refused = await second.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    assert "already running" in refused.content
    gpu.gate.set()
    await stub.messages.wait_for(lambda s: "finished" in (s.content or ""), timeout=10)
    assert len(gpu.trained) == 1


async def test_a_failed_training_is_reported_in_the_channel(bot, stub, gpu):
    from gpu_service.errors import TrainingFailed

    gpu.fail_with = TrainingFailed("The loss became NaN at step 3.")
    await stub.slash_command("train", photos(3), user_id=ADMIN_ID)
    posted = await stub.messages.wait_for(lambda s: "NaN" in (s.content or ""), timeout=10)
    assert posted.kind == "create"
    assert await eventually(lambda: _state(bot, "failed"))


async def _state(bot, state):
    records = await bot.app.jobs.all()
    return bool(records) and records[-1].state == state


async def test_a_slow_gpu_never_delays_the_acknowledgement(stub, tmp_path):
    gpu = SleepyGpu(train_delay_s=0.5)
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu):
        interaction = await stub.slash_command("train", photos(3), user_id=ADMIN_ID)
        ack = await interaction.wait_ack()
        assert ack.at - interaction.sent_at < 1.0


@pytest.mark.slow
async def test_an_admin_trains_the_tiny_model_for_real_and_qwerty_then_uses_it(stub, tmp_path, tiny_model_dir):
    """End to end: Discord attachments -> intake -> DreamBooth LoRA on the tiny model -> live -> /qwerty."""
    from gpu_service.local_client import LocalGpuClient

    settings = bot_settings(tmp_path / "data", tiny_model_dir, TRAIN_CLASS_IMAGES=2, TRAIN_CHECKPOINT_EVERY=2)
    async with running_bot(stub, settings, LocalGpuClient(settings)):
        interaction = await stub.slash_command("train", {**photos(3), "steps": 3}, user_id=ADMIN_ID)
        assert (await interaction.wait_ack()).callback_type == DEFERRED
        result = await stub.messages.wait_for(lambda s: "finished" in (s.content or ""), timeout=240)
        assert "`qwerty` v1 is live" in result.content and result.files
        assert all(Image.open(io.BytesIO(f.data)).size == (64, 64) for f in result.files)
        qwerty = await stub.slash_command("qwerty", {"prompt_prefix": "a painting of a", "steps": 2})
        answer = await qwerty.responses.wait_for(lambda s: s.kind == "followup", timeout=120)
        assert "qwerty v1" in answer.content and len(answer.files) == 1
