"""Messages within Discord's limits: 2000 characters, 10 files, each file within the upload limit."""

from __future__ import annotations

import io
import os

from PIL import Image

from bot.render import MAX_CONTENT, fit_image, generation_reply, queue_update, train_progress
from commands.context import RequestContext
from commands.generate import Generation
from commands.qwerty import Queued, Rendering
from gpu_service.schemas import GeneratedImage, GenerateRequest, GenerateResult, TrainProgress


def noise_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def generation(prompt="a qwerty dog", images=None, **result) -> Generation:
    images = images or (GeneratedImage(index=0, seed=1, png=noise_png(8)),)
    values = dict(prompt=prompt, negative_prompt="", images=images, model="m", subject="qwerty", version=3,
                  base_fallback=False, steps=25, guidance=7.5, width=8, height=8)
    values.update(result)
    return Generation("gid", GenerateRequest(prompt_prefix="a", subject="qwerty"), GenerateResult(**values),
                      RequestContext("discord"))


def test_a_png_that_fits_is_sent_as_is():
    png = noise_png(16)
    attachment = fit_image(png, "x", len(png))
    assert (attachment.filename, attachment.data) == ("x.png", png)


def test_a_png_over_the_limit_is_re_encoded_and_downscaled_until_it_fits():
    png = noise_png(256)  # noise: ~200 KB as PNG, and JPEG cannot squeeze it much either
    limit = 20_000
    attachment = fit_image(png, "x", limit)
    assert attachment.filename == "x.jpg" and len(attachment.data) <= limit
    image = Image.open(io.BytesIO(attachment.data))
    assert image.format == "JPEG" and image.width < 256


def test_content_stays_within_2000_characters_whatever_the_prompt():
    reply = generation_reply(generation(prompt="word " * 900, negative_prompt="no " * 400))
    assert len(reply.content) <= MAX_CONTENT and "seed 1" in reply.content


def test_withheld_images_are_noted_and_not_sent():
    images = (GeneratedImage(index=0, seed=1, png=noise_png(8)), GeneratedImage(index=1, seed=2, withheld=True))
    reply = generation_reply(generation(images=images))
    assert [a.filename for a in reply.attachments] == ["gid-0.png"]
    assert "1 image(s) withheld" in reply.content and "seeds 1, 2" in reply.content


def test_the_base_model_fallback_is_said():
    reply = generation_reply(generation(version=None, base_fallback=True))
    assert "no trained version yet" in reply.content and "base model" in reply.content


def test_markdown_in_prompts_is_shown_literally():
    assert "\\*\\*bold\\*\\*" in generation_reply(generation(prompt="**bold**")).content


def test_progress_texts():
    assert queue_update(Queued(3)) == "You are #3 in the queue…"
    assert queue_update(Queued(1)) == "You are next…"
    assert queue_update(Rendering(5, 25)) == "Rendering… step 5/25"
    text = train_progress("qwerty", TrainProgress(job_id="j", state="training", step=10, total_steps=100, loss=0.5,
                                                  eta_s=120))
    assert text == "Training `qwerty`: training, step 10/100 (10%), loss 0.5000, about 2 min left"
