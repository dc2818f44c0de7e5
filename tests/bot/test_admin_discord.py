"""/models, /rollback and /status through the real discord.py client: admins only, checked at run time."""

from __future__ import annotations

import asyncio

import pytest

from gpu_service.schemas import ImageSource, TrainRequest
from tests.bot.conftest import ADMIN_ID, ADMINISTRATOR, MEMBER_ID
from tests.bot.helpers import DEFERRED, MESSAGE, is_answer, qwerty


def train_request(job_id: str, subject: str = "qwerty", by: str = "ana") -> TrainRequest:
    return TrainRequest(job_id=job_id, subject=subject, instance_phrase=f"{subject} dog", class_phrase="dog",
                        images=(ImageSource(name="a"),), requested_by=by)


async def admin_answer(stub, name: str, options=(), user_id=ADMIN_ID) -> str:
    interaction = await stub.slash_command(name, options, user_id=user_id)
    ack = await interaction.wait_ack()
    assert ack.callback_type == DEFERRED and ack.ephemeral
    return (await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=5)).content


@pytest.mark.parametrize(("name", "options"), [("models", {}), ("rollback", {"subject": "qwerty", "version": 1}),
                                               ("status", {})])
async def test_members_are_refused_ephemerally_and_nothing_changes(bot, stub, gpu, name, options):
    await gpu.train(train_request("j1"))
    await gpu.train(train_request("j2"))
    ack = await (await stub.slash_command(name, options, user_id=MEMBER_ID)).wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral and "Only admins" in ack.content
    assert [v.version for v in gpu.versions if v.active] == [2]


async def test_models_lists_subjects_versions_the_live_one_who_trained_them_and_wandb(bot, stub, gpu):
    assert "No trained subjects" in await admin_answer(stub, "models")
    await gpu.train(train_request("j1", by="ana"))
    await gpu.train(train_request("j2", by="bo"))
    await gpu.train(train_request("c1", subject="cat"))
    text = await admin_answer(stub, "models")
    assert "**qwerty**" in text and "v2 is live" in text and "**cat**" in text
    v2, v1 = [line for line in text.splitlines() if "v2 · " in line or "v1 · " in line][:2]
    assert v2.startswith("  ▶ v2") and "by bo" in v2 and "<https://wandb.example/runs/j2>" in v2
    assert v1.startswith("  · v1") and "by ana" in v1 and "trained 20" in v1


async def test_rollback_makes_the_version_live_at_once_and_the_next_qwerty_uses_it(bot, stub, gpu):
    await gpu.train(train_request("j1"))
    await gpu.train(train_request("j2"))
    before = await qwerty(stub, {"prompt_prefix": "a"})
    assert "qwerty v2" in before.content and gpu.generated[-1].subject_version == 2
    text = await admin_answer(stub, "rollback", {"subject": "qwerty", "version": 1})
    assert text == "`qwerty` v1 is live now (was v2): the next /qwerty uses it."
    after = await qwerty(stub, {"prompt_prefix": "a"})
    assert "qwerty v1" in after.content
    assert gpu.generated[-1].subject_version == 1  # named, so a Modal container with a stale view follows
    forward = await admin_answer(stub, "rollback", {"subject": "qwerty", "version": 2})
    assert "v2 is live now (was v1)" in forward
    back = await admin_answer(stub, "rollback", {"subject": "qwerty"})  # default: the one before the live one
    assert "v1 is live now (was v2)" in back
    unknown = await admin_answer(stub, "rollback", {"subject": "qwerty", "version": 9})
    assert "no version 9" in unknown


async def test_status_shows_the_backend_the_queue_and_running_trainings_with_progress(bot, stub, gpu):
    text = await admin_answer(stub, "status")
    assert "`sleepy`: reachable, warm" in text and "Queue: 0 running, 0 waiting" in text
    assert "Trainings: none running" in text
    gpu.gate = asyncio.Event()
    training = await stub.slash_command("train", {"urls": "", "image1": _png(), "image2": _png(), "image3": _png()},
                                        user_id=ADMIN_ID)
    await training.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    waiting = [await stub.slash_command("qwerty", {"prompt_prefix": f"a{n}"}, user_id=n + 1) for n in range(5)]
    for interaction in waiting:
        await interaction.wait_ack()
    text = await eventually_status(stub, "): training")
    assert "Queue: 4 running, 1 waiting" in text and "Training `qwerty` (job `" in text
    assert "another process" not in text and "recorded it" not in text
    gpu.gate.set()
    for interaction in waiting:
        await interaction.responses.wait_for(is_answer, timeout=10)


async def eventually_status(stub, needle: str) -> str:
    for _ in range(50):
        text = await admin_answer(stub, "status")
        if needle in text:
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{needle!r} never in /status: {text}")


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (72, 72), (10, 120, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_export_attaches_the_lora_named_after_the_subject_and_version(bot, stub, gpu):
    await gpu.train(train_request("j1"))
    interaction = await stub.slash_command("export", {"subject": "qwerty", "version": 1, "format": "kohya"},
                                           user_id=ADMIN_ID)
    ack = await interaction.wait_ack()
    assert ack.callback_type == DEFERRED and ack.ephemeral
    edit = await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
    [file] = edit.files
    assert file.filename == "qwerty-v1.safetensors" and file.data.startswith(b"kohya LoRA of qwerty v1")
    assert "kohya format" in edit.content and gpu.exported == [("qwerty", 1, "kohya")]


async def test_export_over_the_upload_limit_is_refused_with_a_sentence_and_no_file(bot, stub, gpu):
    await gpu.train(train_request("j1"))
    gpu.lora_bytes = 11 * 2**20  # the stub's interactions allow 10 MiB
    interaction = await stub.slash_command("export", {"subject": "qwerty", "version": 1}, user_id=ADMIN_ID)
    await interaction.wait_ack()
    answer = await interaction.responses.wait_for(lambda s: s.kind in ("edit", "followup"), timeout=5)
    assert "11.0 MiB, over the 10.0 MiB upload limit" in answer.content and not answer.files


async def test_members_may_not_export(bot, stub, gpu):
    await gpu.train(train_request("j1"))
    ack = await (await stub.slash_command("export", {"subject": "qwerty", "version": 1}, user_id=MEMBER_ID)).wait_ack()
    assert ack.callback_type == MESSAGE and "Only admins" in ack.content and gpu.exported == []


async def test_a_server_admin_exports_the_server_s_own_subject_by_its_name(bot, stub, gpu):
    await gpu.train(train_request("j1", subject=f"dog@{stub.guild_id}"))
    interaction = await stub.slash_command("export", {"subject": "Dog", "version": 1}, user_id=MEMBER_ID,
                                           permissions=ADMINISTRATOR)
    await interaction.wait_ack()
    edit = await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
    assert [file.filename for file in edit.files] == ["dog-v1.safetensors"]
    assert gpu.exported == [(f"dog@{stub.guild_id}", 1, "diffusers")]
