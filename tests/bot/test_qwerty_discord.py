"""/qwerty through the real discord.py client and the loopback Discord: ack, progress, one answer."""

from __future__ import annotations

import asyncio
import io
import logging

from PIL import Image

from gpu_service.errors import GpuBusy
from tests.bot.conftest import bot_settings, eventually, running_bot
from tests.support.sleepy_gpu import SleepyGpu

DEFERRED, MESSAGE, EPHEMERAL = 5, 4, 64


def is_answer(sent) -> bool:
    return sent.kind == "followup"


def decoded(files):
    return [Image.open(io.BytesIO(f.data)) for f in files]


async def test_qwerty_is_deferred_then_answered_with_one_message_of_pngs(bot, stub, gpu):
    interaction = await stub.slash_command(
        "qwerty", {"prompt_prefix": "a gorgeous painting of a", "prompt_postfix": "in space", "count": 3, "seed": 7}
    )
    ack = await interaction.wait_ack()
    assert ack.callback_type == DEFERRED and not ack.ephemeral
    answer = await interaction.responses.wait_for(is_answer, timeout=10)
    assert [f.content_type for f in answer.files] == ["image/png"] * 3
    assert [image.size for image in decoded(answer.files)] == [(16, 16)] * 3
    assert "a gorgeous painting of a qwerty dog in space" in answer.content
    assert "seeds 7, 8, 9" in answer.content
    assert answer.payload["allowed_mentions"] == {"parse": []}
    async def recorded():
        records = await bot.app.jobs.all()
        return records if records and records[0].message_id else None

    [record] = await eventually(recorded)
    assert (record.state, record.message_id, record.interaction_id) == ("done", answer.message_id, interaction.id)


async def test_a_prompt_with_everyone_pings_nobody(bot, stub):
    interaction = await stub.slash_command("qwerty", {"prompt_prefix": "@everyone look at this"})
    answer = await interaction.responses.wait_for(is_answer, timeout=10)
    assert "@everyone" in answer.content and answer.payload["allowed_mentions"] == {"parse": []}


async def test_a_bad_option_is_refused_ephemerally_and_nothing_runs(bot, stub, gpu):
    interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a", "count": 9})
    ack = await interaction.wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral and "`count`" in ack.content
    assert gpu.generated == [] and await bot.app.jobs.all() == []


async def test_over_the_per_user_limit_the_member_gets_an_ephemeral_refusal(bot, stub, gpu):
    gpu.gate = asyncio.Event()
    held = [await stub.slash_command("qwerty", {"prompt_prefix": f"a{i}"}) for i in range(4)]
    for interaction in held:
        assert (await interaction.wait_ack()).callback_type == DEFERRED
    refused = await stub.slash_command("qwerty", {"prompt_prefix": "one too many"})
    ack = await refused.wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral
    assert "1 running and 3 waiting" in ack.content
    gpu.gate.set()
    for interaction in held:
        await interaction.responses.wait_for(is_answer, timeout=10)


async def test_waiting_members_see_their_place_then_steps_with_edits_at_least_the_interval_apart(stub, tmp_path):
    gpu = SleepyGpu(delay_s=1.1)
    settings = bot_settings(tmp_path / "data", GPU_CONCURRENCY=1, PROGRESS_INTERVAL_S=1.0)
    async with running_bot(stub, settings, gpu):
        gpu.gate = asyncio.Event()
        first = await stub.slash_command("qwerty", {"prompt_prefix": "a", "steps": 8}, user_id=1)
        await stub.slash_command("qwerty", {"prompt_prefix": "b", "steps": 8}, user_id=2)
        third = await stub.slash_command("qwerty", {"prompt_prefix": "c", "steps": 8}, user_id=3)
        await third.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
        gpu.gate.set()
        await third.responses.wait_for(is_answer, timeout=20)
        await first.responses.wait_for(is_answer, timeout=5)
        # The progress message goes once the answer is posted: one message per answer.
        await third.responses.wait_for(lambda s: s.kind == "delete", timeout=5)
    edits = [s for s in third.responses if s.kind == "edit"]
    texts = [s.content for s in edits]
    assert texts[0] == "You are #2 in the queue…"
    assert any(t.startswith("Rendering… step") for t in texts)
    gaps = [later.at - earlier.at for earlier, later in zip(edits, edits[1:])]
    assert gaps and min(gaps) >= 0.95  # throttled: never faster than PROGRESS_INTERVAL_S


async def test_gpu_errors_become_the_services_message_and_the_bot_keeps_serving(bot, stub, gpu):
    gpu.fail_with = GpuBusy("A training for qwerty is using the GPU.")
    failed = await stub.slash_command("qwerty", {"prompt_prefix": "a"})
    error = await failed.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    assert "A training for qwerty is using the GPU." in error.content and "try again" in error.content
    gpu.fail_with = None
    works = await stub.slash_command("qwerty", {"prompt_prefix": "a"})
    assert len((await works.responses.wait_for(is_answer, timeout=10)).files) == 1

    async def states():
        return [r.state for r in await bot.app.jobs.all()]

    assert await eventually(lambda: _equal(states(), ["failed", "done"]))


async def test_unexpected_errors_are_logged_with_context_and_the_member_gets_an_apology(bot, stub, gpu, caplog):
    caplog.set_level(logging.ERROR, logger="bot.errors")
    gpu.fail_with = ZeroDivisionError("internal detail")
    interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a"})
    error = await interaction.responses.wait_for(lambda s: s.kind == "edit", timeout=10)
    assert error.content.startswith("Sorry") and "internal detail" not in error.content
    [logged] = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert interaction.id in logged.getMessage() and "/qwerty" in logged.getMessage()
    reference = logged.getMessage().split("[ref ")[1].split("]")[0]
    assert reference in error.content and logged.exc_info[0] is ZeroDivisionError


async def test_subject_is_autocompleted_from_the_trained_subjects(bot, stub, gpu):
    await gpu.train(_train_request("cat", "sks cat"))
    await gpu.train(_train_request("qwerty", "qwerty dog"))
    interaction = await stub.autocomplete("qwerty", {"prompt_prefix": "a", "subject": "ca"}, focused="subject")
    ack = await interaction.wait_ack()
    assert ack.callback_type == 8
    assert [c["value"] for c in ack.payload["data"]["choices"]] == ["cat"]


def _train_request(subject, phrase):
    from gpu_service.schemas import ImageSource, TrainRequest

    return TrainRequest(job_id=f"j-{subject}", subject=subject, instance_phrase=phrase, class_phrase="x",
                        images=(ImageSource(name="a"),))


async def test_50_simultaneous_qwerty_are_all_acknowledged_and_all_answered(stub, tmp_path):
    users = 50
    gpu = SleepyGpu(delay_s=0.05)
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu):
        interactions = await asyncio.gather(*(
            stub.slash_command("qwerty", {"prompt_prefix": f"a{n}"}, user_id=1000 + n) for n in range(users)
        ))
        acks = await asyncio.gather(*(i.wait_ack(timeout=10) for i in interactions))
        answers = await asyncio.gather(*(i.responses.wait_for(is_answer, timeout=30) for i in interactions))
    assert all(ack.callback_type == DEFERRED for ack in acks)
    assert max(ack.at - i.sent_at for ack, i in zip(acks, interactions)) < 3.0  # Discord's window
    assert all(len(answer.files) == 1 for answer in answers)
    assert gpu.max_running <= 4  # GPU_CONCURRENCY


async def _equal(values, expected):
    return (await values) == expected


async def test_the_wandb_row_carries_the_discord_context_and_the_answers_link(stub, tmp_path):
    from commands.wandb_log import TABLE_KEY
    from tests.support.wandb_offline import read_offline_runs

    settings = bot_settings(tmp_path / "data", WANDB_MODE="offline")
    async with running_bot(stub, settings, SleepyGpu()) as bot:
        interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a", "seed": 11}, user_id=4242)
        answer = await interaction.responses.wait_for(is_answer, timeout=10)
        await eventually(lambda: _has_message_id(bot))
    [run] = read_offline_runs(settings.wandb_dir)
    [row] = run.table_rows(TABLE_KEY)
    assert row["message_link"] == f"https://discord.com/channels/{stub.guild_id}/{stub.channel_id}/{answer.message_id}"
    assert (row["guild_id"], row["channel_id"], row["user_id"], row["interaction_id"], row["front_end"]) == (
        stub.guild_id, stub.channel_id, "4242", interaction.id, "discord")
    assert row["seed"] == 11


async def _has_message_id(bot):
    records = await bot.app.jobs.all()
    return bool(records) and bool(records[0].message_id)
