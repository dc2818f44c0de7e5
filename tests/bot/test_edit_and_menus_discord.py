"""✏️ Edit (a form, then a new picture), the "Vary this image" message menu (after a restart too), /help
and /qwerty's aspect, through the real discord.py client."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from PIL import Image

from gpu_service.schemas import ModelVersion
from tests.bot.conftest import MEMBER_ID, bot_settings, eventually, running_bot
from tests.bot.helpers import DEFERRED, MESSAGE, SELECT, click, is_answer, job_of, qwerty, seeds_of
from tests.support.sleepy_gpu import SleepyGpu

MODAL = 9
VARY = "Vary this image"


def inputs(modal: dict) -> dict[str, dict]:
    """custom id -> text input, of a modal the bot opened."""
    return {field["custom_id"]: field for row in modal["components"] for field in row["components"]}


def size_of(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


async def test_edit_opens_a_prefilled_form_and_its_submit_renders_the_new_words(bot, stub, gpu):
    first = await qwerty(stub, {"prompt_prefix": "a painting of a", "prompt_postfix": "in space",
                                "negative_prompt": "blurry", "seed": 4, "steps": 6}, user_id=MEMBER_ID)
    job = job_of(first)
    opened = await click(stub, first.message_id, f"sq:edit:{job}", user_id=MEMBER_ID)
    form = await opened.wait_ack()
    assert form.callback_type == MODAL and form.data["custom_id"] == f"sq:edit:{job}"
    fields = inputs(form.data)
    assert [field.get("value") for field in fields.values()] == ["a painting of a", "in space", "blurry"]
    [prefix, postfix, _negative] = fields
    before = len(gpu.generated)
    submitted = await stub.submit_modal(opened, {postfix: "under the sea"})
    assert (await submitted.wait_ack()).callback_type == DEFERRED
    answer = await submitted.responses.wait_for(is_answer, timeout=10)
    assert "a painting of a qwerty dog under the sea" in answer.content and job_of(answer) != job
    edited = gpu.generated[before]
    assert (edited.prompt_prefix, edited.prompt_postfix, edited.negative_prompt) == (
        "a painting of a", "under the sea", "blurry")
    assert edited.steps == 6 and edited.seed is None and 4 not in seeds_of(answer.content)
    record = await bot.app.jobs.get(job_of(answer))
    assert record.request["prompt_postfix"] == "under the sea" and record.user_id == str(MEMBER_ID)


async def test_an_edited_prompt_with_a_banned_word_is_refused_before_any_gpu_time(bot, stub, gpu):
    first = await qwerty(stub, {"prompt_prefix": "a"})
    opened = await click(stub, first.message_id, f"sq:edit:{job_of(first)}")
    prefix = next(iter(inputs((await opened.wait_ack()).data)))
    await bot.app.community.add_banned_words(stub.guild_id, ["dragon"])
    before = len(gpu.generated)
    refused = await stub.submit_modal(opened, {prefix: "a red dragon"})
    ack = await refused.wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral and '"dragon"' in ack.content
    assert len(gpu.generated) == before


async def test_vary_this_image_works_on_an_old_message_after_a_restart(stub, tmp_path):
    settings = bot_settings(tmp_path / "data")
    async with running_bot(stub, settings, SleepyGpu()) as first:
        one = await qwerty(stub, {"prompt_prefix": "a", "seed": 3})
        two = await qwerty(stub, {"prompt_prefix": "b", "seed": 5, "count": 2}, user_id=MEMBER_ID)
        for answer in (one, two):
            await eventually(lambda answer=answer: _message_recorded(first, answer))
    gpu = SleepyGpu()  # a new process: nothing in memory, the same DATA_DIR
    async with running_bot(stub, settings, gpu):
        varied = await stub.message_command(VARY, one.message_id)
        assert (await varied.wait_ack()).callback_type == DEFERRED  # one image: varied at once
        await varied.responses.wait_for(is_answer, timeout=10)
        assert gpu.generated[-1].init_image == one.files[0].data and gpu.generated[-1].prompt_prefix == "a"
        asked = await stub.message_command(VARY, two.message_id)
        menu = await asked.wait_ack()  # several: which one, as the Variations button asks
        assert menu.callback_type == MESSAGE and menu.ephemeral
        picked = await click(stub, menu.message_id, f"sq:var:{job_of(two)}", component_type=SELECT, values=["1"])
        answer = await picked.responses.wait_for(is_answer, timeout=10)
        assert gpu.generated[-1].init_image == two.files[1].data and len(answer.files) == 2


async def test_vary_this_image_on_a_gallery_post_varies_the_shared_image(stub, tmp_path):
    from tests.bot.test_gallery_discord import gallery_posts, set_gallery

    gallery_id = stub.add_text_channel("gallery")
    gpu = SleepyGpu()
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu):
        await set_gallery(stub, gallery_id)
        answer = await qwerty(stub, {"prompt_prefix": "a", "seed": 9, "count": 2})
        menu = await (await click(stub, answer.message_id, f"sq:share:{job_of(answer)}")).wait_ack()
        picked = await click(stub, menu.message_id, f"sq:share:{job_of(answer)}", component_type=SELECT,
                             values=["1"])
        await picked.responses.wait_for(lambda s: s.kind == "edit", timeout=5)
        [post] = gallery_posts(stub, gallery_id)
        varied = await stub.message_command(VARY, post.message_id)
        await varied.responses.wait_for(is_answer, timeout=10)
        assert gpu.generated[-1].init_image == answer.files[1].data


async def test_vary_this_image_on_a_message_without_pictures_says_what_it_is_for(bot, stub, gpu):
    helped = await stub.slash_command("help", {})
    text = await helped.wait_ack()
    refused = await stub.message_command(VARY, text.message_id)
    ack = await refused.wait_ack()
    assert ack.callback_type == MESSAGE and ack.ephemeral and "pictures I made" in ack.content
    assert gpu.generated == []


async def test_help_lists_the_commands_this_servers_subjects_and_examples_to_everyone_privately(bot, stub, gpu):
    gpu.versions = [_version("qwerty", "qwerty dog"), _version(f"dog@{stub.guild_id}", "sks dog"),
                    _version("cat@999", "other server's cat")]
    bot.app.subjects.invalidate()
    answer = await (await stub.slash_command("help", {}, user_id=MEMBER_ID)).wait_ack()
    assert answer.callback_type == MESSAGE and answer.ephemeral
    text = answer.content
    for command in ("/qwerty", "/train", "/top", "/help"):
        assert f"`{command}`" in text
    assert "`qwerty`: qwerty dog" in text and "`dog`: sks dog" in text
    assert "cat" not in text and "999" not in text
    assert text.count("`/qwerty prompt_prefix:") == 2 and len(text) <= 2000


async def test_aspect_shapes_the_picture_and_a_reroll_keeps_it(stub, tmp_path):
    gpu = SleepyGpu(image_size=64)  # the model's native side
    async with running_bot(stub, bot_settings(tmp_path / "data"), gpu):
        square = await qwerty(stub, {"prompt_prefix": "a"})
        portrait = await qwerty(stub, {"prompt_prefix": "a", "aspect": "portrait"})
        wide = await qwerty(stub, {"prompt_prefix": "a", "aspect": "wide"})
        assert [size_of(a.files[0].data) for a in (square, portrait, wide)] == [(64, 64), (56, 80), (88, 48)]
        rerolled = await click(stub, wide.message_id, f"sq:reroll:{job_of(wide)}")
        again = await rerolled.responses.wait_for(is_answer, timeout=10)
        assert gpu.generated[-1].aspect == "wide" and size_of(again.files[0].data) == (88, 48)


def _version(subject: str, phrase: str) -> ModelVersion:
    return ModelVersion(subject=subject, version=1, instance_phrase=phrase, class_phrase="animal",
                        base_model="sleepy", created_at=datetime.now(UTC), active=True)


async def _message_recorded(bot, answer):
    return (await bot.app.jobs.get(job_of(answer))).message_id == answer.message_id
