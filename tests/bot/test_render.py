"""Messages within Discord's limits: 2000 characters, 10 files, each file within the upload limit."""

from __future__ import annotations

import io
import os

from PIL import Image

import discord
import pytest

from bot.render import (
    MAX_CONTENT,
    MAX_FILES,
    Attachment,
    Reply,
    fit_embed,
    fit_image,
    generation_reply,
    queue_update,
    train_progress,
    training_result,
    training_started,
    write_report_card,
)
from commands.context import RequestContext
from commands.generate import Generation
from commands.qwerty import Queued, Rendering, Warming
from commands.train import PreparedTraining
from gpu_service.intake import Rejection
from gpu_service.schemas import (
    GeneratedImage,
    GenerateRequest,
    GenerateResult,
    ImageSource,
    ModelVersion,
    QualityReport,
    TrainProgress,
    TrainRequest,
    TrainResult,
)


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
    assert queue_update(Warming(42)) == "Warming up the GPU (about 42 s)…"
    text = train_progress("qwerty", TrainProgress(job_id="j", state="training", step=10, total_steps=100, loss=0.5,
                                                  eta_s=120))
    assert text == "Training `qwerty`: training, step 10/100 (10%), loss 0.5000, about 2 min left"


def trained(verdict="overfit", card=True, samples=3, wandb_url="https://wandb.ai/team/proj/runs/abc") -> TrainResult:
    quality = QualityReport(dino=0.7123, clip_i=0.8456, clip_t=0.2011, verdict=verdict, step=400,
                            base={"dino": 0.3012, "clip_i": 0.6034, "clip_t": 0.3106})
    version = ModelVersion(subject="qwerty", version=3, instance_phrase="qwerty dog", class_phrase="dog",
                           base_model="base", created_at="2026-12-04T12:00:00Z", steps=500, final_loss=0.1234,
                           wandb_url=wandb_url, quality=quality)
    return TrainResult(job_id="j1", version=version, validation_images=tuple(noise_png(8) for _ in range(samples)),
                       report_card=noise_png(16) if card else None)


def test_training_finished_names_the_three_scores_and_the_verdict_with_its_advice():
    reply = training_result(trained("overfit"), requested_by="42")
    text = reply.content
    assert text.startswith("<@42> Training finished: `qwerty` v3 is live.")
    assert "DINO 0.712, CLIP-I 0.846, CLIP-T 0.201" in text
    assert "base model: DINO 0.301, CLIP-I 0.603, CLIP-T 0.311" in text
    assert "Verdict: overfit. Overfit: it copies the training photos" in text and "fewer steps" in text
    assert "step 400" in text


@pytest.mark.parametrize(("verdict", "advice"), [("ok", "Looks good"), ("underfit", "Try more steps")])
def test_every_verdict_says_what_to_do(verdict, advice):
    assert f"Verdict: {verdict}. " in training_result(trained(verdict)).content
    assert advice in training_result(trained(verdict)).content


def test_the_report_card_is_the_first_file_and_the_samples_follow_within_ten():
    result = trained(samples=12)
    reply = training_result(result)
    assert reply.attachments[0] == Attachment("qwerty-v3-report-card.png", result.report_card)
    assert [a.filename for a in reply.attachments[1:3]] == ["qwerty-v3-sample-0.png", "qwerty-v3-sample-1.png"]
    assert len(reply.attachments) == MAX_FILES


def test_without_a_card_or_scores_the_message_still_goes_out():
    result = trained(card=False)
    result = result.model_copy(update={"version": result.version.model_copy(update={"quality": None})})
    reply = training_result(result)
    assert "Training finished" in reply.content and "Verdict" not in reply.content
    assert [a.filename for a in reply.attachments][0] == "qwerty-v3-sample-0.png"


@pytest.mark.parametrize("location", ["/srv/data/wandb/offline-run-20261204", "/data/wandb/wandb/offline-run-1",
                                      "http://wandb.ai/team/proj/runs/abc", "file:///data/wandb/offline-run-1"])
def test_a_w_and_b_location_that_is_not_an_https_page_is_not_shown(location):
    reply = training_result(trained(wandb_url=location))
    assert location not in reply.content and "/data" not in reply.content and "logged offline" in reply.content


def test_a_w_and_b_page_is_shown():
    assert "W&B: https://wandb.ai/team/proj/runs/abc" in training_result(trained()).content


def test_the_terminal_copy_of_the_card_is_written_where_asked(tmp_path):
    result = trained()
    path = write_report_card(result, tmp_path / "outputs")
    assert path == tmp_path / "outputs" / "qwerty-v3-report-card.png" and path.read_bytes() == result.report_card
    assert write_report_card(trained(card=False), tmp_path) is None


def test_a_reply_is_within_the_limits_whatever_it_is_given():
    reply = Reply("x" * 5000, tuple(Attachment(f"{i}.png", b"") for i in range(14)))
    assert len(reply.content) == MAX_CONTENT and reply.content.endswith("…") and len(reply.attachments) == MAX_FILES


def test_an_embed_is_fitted_part_by_part_and_in_total():
    embed = discord.Embed(title="t" * 400, description="d" * 5000)
    embed.set_footer(text="f" * 3000)
    for _ in range(30):
        embed.add_field(name="n" * 300, value="v" * 2000)
    fitted = fit_embed(embed)
    assert len(fitted.title) == 256 and len(fitted.footer.text) == 2048
    assert all(len(f.name) <= 256 and len(f.value) <= 1024 for f in fitted.fields)
    assert len(fitted) <= 6000 and fitted.fields


def test_an_embed_keeps_at_most_25_fields_and_its_description_when_they_fit():
    embed = discord.Embed(description="short")
    for index in range(30):
        embed.add_field(name=str(index), value="v")
    fitted = fit_embed(embed)
    assert len(fitted.fields) == 25 and fitted.description == "short"


def prepared(rejected) -> PreparedTraining:
    request = TrainRequest(job_id="j1", subject="qwerty", instance_phrase="q" * 200, class_phrase="d" * 200,
                           images=(ImageSource(url="https://example.com/a.png"),))
    return PreparedTraining(request, RequestContext("discord"), tuple(rejected), lease=None)


def test_twenty_long_dead_links_make_a_reply_within_the_limit_with_no_secret():
    links = [Rejection(f"https://bob:hunter2@host{i}.example.com/{'p' * 200}.png?token=s3cr3t{i}", "could not connect")
             for i in range(20)]
    text = training_started(prepared(links), "posted below in this channel")
    assert len(text) <= MAX_CONTENT and "Skipped 20 image(s):" in text and "more" in text
    assert "hunter2" not in text and "s3cr3t" not in text and "token" not in text
    assert "- https://host0.example.com/" in text


@pytest.mark.parametrize(
    ("state", "message"),
    [("failed", "CUDA out of memory. Tried to allocate 2.00 GiB"), ("training", "read /srv/private/cache/x.bin")],
)
def test_progress_never_shows_a_failures_raw_text_or_a_path(state, message):
    text = train_progress("qwerty", TrainProgress(job_id="j", state=state, step=3, total_steps=10, message=message))
    assert text.startswith(f"Training `qwerty`: {state}") and message not in text and "/srv" not in text


def test_progress_notes_are_shown():
    text = train_progress("qwerty", TrainProgress(job_id="j", state="saving", message="scoring the new version"))
    assert text.endswith("\nscoring the new version")
