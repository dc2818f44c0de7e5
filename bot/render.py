"""Turning results into Discord messages: text within Discord's limits, files within the upload limit."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import discord

from commands.generate import Generation
from commands.qwerty import Queued, Rendering, Update
from commands.train import PreparedTraining, progress_summary
from gpu_service.schemas import TrainProgress, TrainResult

MAX_CONTENT = 2000
MAX_FILES = 10
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's default attachment_size_limit
_PROMPT_SHOWN = 1200  # leaves room for seeds and notes within MAX_CONTENT


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes

    def to_file(self) -> discord.File:
        return discord.File(io.BytesIO(self.data), filename=self.filename)


@dataclass(frozen=True)
class Reply:
    content: str
    attachments: tuple[Attachment, ...] = ()

    def files(self) -> list[discord.File]:
        return [attachment.to_file() for attachment in self.attachments]


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str) -> str:
    """Discord's markdown off, for a terminal."""
    return text.replace("**", "").replace("\\", "").replace("`", "")


def queue_update(update: Update) -> str:
    if isinstance(update, Queued):
        return f"You are #{update.position} in the queue…" if update.position > 1 else "You are next…"
    if isinstance(update, Rendering):
        return f"Rendering… step {update.step}/{update.total_steps}"
    raise TypeError(f"unknown update {update!r}")


def generation_reply(generation: Generation, upload_limit: int = DEFAULT_UPLOAD_LIMIT, *, spoiler: bool = False) -> Reply:
    """The prompt, seeds and notes, and every image that was not withheld (each within the limit).
    With `spoiler` (a guild's setting) the files are named SPOILER_..., which Discord blurs."""
    result = generation.result
    prompt = discord.utils.escape_markdown(clip(result.prompt, _PROMPT_SHOWN))
    seeds = ", ".join(str(image.seed) for image in result.images)
    model = f"{result.subject} v{result.version}" if result.version else "base model"
    lines = [f"**{prompt}**", f"seed{'s' if len(result.images) > 1 else ''} {seeds} · {result.steps} steps · "
             f"guidance {result.guidance:g} · {model}"]
    if result.negative_prompt:
        lines.append(f"negative: {discord.utils.escape_markdown(clip(result.negative_prompt, 300))}")
    if result.base_fallback:
        lines.append(f"(`{result.subject}` has no trained version yet: the base model answered)")
    if result.withheld_count:
        lines.append(f"{result.withheld_count} image(s) withheld by the safety checker.")
    attachments = [
        fit_image(image.png, generation.row_id(image.index), upload_limit)
        for image in result.images if image.png is not None
    ]
    if spoiler:
        attachments = [Attachment(f"SPOILER_{a.filename}", a.data) for a in attachments]
    return Reply(clip("\n".join(lines)), tuple(attachments[:MAX_FILES]))


def fit_image(png: bytes, stem: str, limit: int) -> Attachment:
    """The PNG as it is when it fits; otherwise a JPEG, downscaled until it fits."""
    if len(png) <= limit:
        return Attachment(f"{stem}.png", png)
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    scale = 1.0
    for _ in range(12):
        resized = image if scale == 1.0 else image.resize(
            (max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.LANCZOS
        )
        buffer = io.BytesIO()
        resized.save(buffer, format="JPEG", quality=88, optimize=True)
        if buffer.tell() <= limit:
            return Attachment(f"{stem}.jpg", buffer.getvalue())
        scale *= max(0.5, min(0.9, math.sqrt(limit / buffer.tell())))
    raise ValueError(f"could not fit an image within {limit} bytes")


def train_progress(subject: str, progress: TrainProgress) -> str:
    line = f"Training `{subject}`: {progress_summary(progress)}"
    if progress.message:
        line += f"\n{clip(progress.message, 500)}"
    return clip(line)


def training_started(prepared: PreparedTraining, progress_link: str) -> str:
    request = prepared.request
    lines = [
        f"Training `{request.subject}` (\"{request.instance_phrase}\", a {request.class_phrase}) on "
        f"{len(request.images)} images. Job `{request.job_id}`; progress: {progress_link}",
    ]
    lines += rejected_lines(prepared.rejected)
    return clip("\n".join(lines))


def rejected_lines(rejected: Sequence) -> list[str]:
    if not rejected:
        return []
    shown = [f"- {clip(r.name, 100)}: {r.reason}" for r in rejected[:15]]
    more = [f"- … and {len(rejected) - 15} more"] if len(rejected) > 15 else []
    return [f"Skipped {len(rejected)} image(s):", *shown, *more]


def training_result(result: TrainResult, requested_by: str = "") -> Reply:
    version = result.version
    who = f"<@{requested_by}> " if requested_by.isdigit() else ""
    lines = [f"{who}Training finished: `{version.subject}` v{version.version} is live."]
    if version.steps:
        loss = f", final loss {version.final_loss:.4f}" if version.final_loss is not None else ""
        lines.append(f"{version.steps} steps{loss}.")
    if version.wandb_url:
        lines.append(f"W&B: {version.wandb_url}")
    lines.append(f"Try it: `/qwerty prompt_prefix:a photo of a subject:{version.subject}`")
    attachments = [
        fit_image(png, f"{version.subject}-v{version.version}-sample-{index}", DEFAULT_UPLOAD_LIMIT)
        for index, png in enumerate(result.validation_images[:MAX_FILES])
    ]
    return Reply(clip("\n".join(lines)), tuple(attachments))


PERIOD_NAMES = {"day": "today", "week": "this week", "all": "of all time"}


def top_text(entries: Sequence, period: str) -> str:
    """/top: rank, votes, the prompt linking to the gallery post, and who made it (no pings)."""
    if not entries:
        return f"No images shared {PERIOD_NAMES.get(period, period)} yet: press Share under a picture."
    lines = [f"**Top images {PERIOD_NAMES.get(period, period)}**"]
    for rank, entry in enumerate(entries, start=1):
        prompt = clip(entry.prompt, 80).replace("[", "(").replace("]", ")")
        lines.append(f"{rank}. ⭐ {entry.votes} · [{discord.utils.escape_markdown(prompt)}]({entry.link}) "
                     f"by <@{entry.creator_id}>")
    return clip("\n".join(lines))
