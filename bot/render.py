"""Turning results into Discord messages, and the one place that keeps them within Discord's limits.

Every message the bot sends is a `Reply` (content clipped to 2,000 characters, at most 10 files, each file
fitted to the upload limit by `fit_image`), or a bare text passed through `clip`; an embed goes through
`fit_embed`. Links are shown without user:password@ or query string (`display_name`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import discord

from commands.admin import wandb_link
from commands.errors import scrub
from commands.generate import Generation
from commands.qwerty import Queued, Rendering, Update, Warming
from commands.train import PreparedTraining, progress_summary
from gpu_service.intake import display_name, format_rejections
from gpu_service.schemas import QualityReport, QualityScores, TrainProgress, TrainResult
from gpu_service.subjects import subject_name, subject_owner

MAX_CONTENT = 2000
MAX_FILES = 10
# Discord's embed limits: each part, and all the text of one embed together.
EMBED_TITLE, EMBED_DESCRIPTION, EMBED_FIELDS, EMBED_FIELD_NAME, EMBED_FIELD_VALUE = 256, 4096, 25, 256, 1024
EMBED_FOOTER, EMBED_AUTHOR, EMBED_TOTAL = 2048, 256, 6000
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
    """A message as it will be sent: built within the limits whatever it is given."""

    content: str
    attachments: tuple[Attachment, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "content", clip(self.content))
        object.__setattr__(self, "attachments", tuple(self.attachments)[:MAX_FILES])

    def files(self) -> list[discord.File]:
        return [attachment.to_file() for attachment in self.attachments]


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    """`text` within `limit` characters (a message's content by default), ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """`embed` with every part within its limit, fields beyond the 25th dropped, and the whole within 6,000
    characters (the last fields give way, then the description)."""
    if embed.title:
        embed.title = clip(embed.title, EMBED_TITLE)
    if embed.footer.text:
        embed.set_footer(text=clip(embed.footer.text, EMBED_FOOTER), icon_url=embed.footer.icon_url)
    if embed.author.name:
        embed.set_author(name=clip(embed.author.name, EMBED_AUTHOR), url=embed.author.url,
                         icon_url=embed.author.icon_url)
    fields = embed.fields[:EMBED_FIELDS]
    embed.clear_fields()
    for field in fields:
        embed.add_field(name=clip(field.name or "", EMBED_FIELD_NAME), value=clip(field.value or "", EMBED_FIELD_VALUE),
                        inline=field.inline)
    description = clip(embed.description or "", EMBED_DESCRIPTION)
    embed.description = None
    while len(embed) >= EMBED_TOTAL and embed.fields:
        embed.remove_field(-1)
    room = EMBED_TOTAL - len(embed)
    embed.description = clip(description, room) if description and room > 0 else None
    return embed


def plain(text: str) -> str:
    """Discord's markdown off, for a terminal."""
    return text.replace("**", "").replace("\\", "").replace("`", "")


def queue_update(update: Update) -> str:
    if isinstance(update, Queued):
        return f"You are #{update.position} in the queue…" if update.position > 1 else "You are next…"
    if isinstance(update, Warming):
        return f"Warming up the GPU (about {update.about_s} s)…"
    if isinstance(update, Rendering):
        return f"Rendering… step {update.step}/{update.total_steps}"
    raise TypeError(f"unknown update {update!r}")


def generation_reply(generation: Generation, upload_limit: int = DEFAULT_UPLOAD_LIMIT, *, spoiler: bool = False) -> Reply:
    """The prompt, seeds and notes, and every image that was not withheld (each within the limit).
    With `spoiler` (a guild's setting) the files are named SPOILER_..., which Discord blurs."""
    result = generation.result
    prompt = discord.utils.escape_markdown(clip(result.prompt, _PROMPT_SHOWN))
    seeds = ", ".join(str(image.seed) for image in result.images)
    model = f"{subject_name(result.subject)} v{result.version}" if result.version else "base model"
    lines = [f"**{prompt}**", f"seed{'s' if len(result.images) > 1 else ''} {seeds} · {result.steps} steps · "
             f"guidance {result.guidance:g} · {model}"]
    if result.negative_prompt:
        lines.append(f"negative: {discord.utils.escape_markdown(clip(result.negative_prompt, 300))}")
    if result.base_fallback:
        lines.append(f"(`{subject_name(result.subject)}` has no trained version yet: the base model answered)")
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
    """The progress line; a failure's own text is left out (it may quote an exception: the error reply that
    follows says what happened, with a reference), other notes are shown cleaned by `scrub`."""
    line = f"Training `{subject_name(subject)}`: {progress_summary(progress)}"
    if progress.message and progress.state != "failed":
        note, private = scrub(progress.message)
        if not private:
            line += f"\n{clip(note, 500)}"
    return clip(line)


def training_started(prepared: PreparedTraining, progress_link: str) -> str:
    request = prepared.request
    own = " (this server's own: other servers keep theirs)" if subject_owner(request.subject) else ""
    head = clip(
        f"Training `{subject_name(request.subject)}`{own} (\"{clip(request.instance_phrase, 100)}\", "
        f"a {clip(request.class_phrase, 100)}) on {len(request.images)} images. Job `{request.job_id}`; "
        f"progress: {progress_link}", MAX_CONTENT // 4,
    )
    return clip("\n".join([head, *rejected_lines(prepared.rejected, MAX_CONTENT - len(head) - 1)]))


def rejected_lines(rejected: Sequence, budget: int = MAX_CONTENT) -> list[str]:
    """"Skipped N image(s):" and one line per refusal (links redacted), all within `budget` characters."""
    if not rejected:
        return []
    title = f"Skipped {len(rejected)} image(s):"
    return [title, format_rejections(rejected, max(0, budget - len(title) - 1))]


def training_result(result: TrainResult, requested_by: str = "", upload_limit: int = DEFAULT_UPLOAD_LIMIT) -> Reply:
    """"Training finished": the version, its quality scores and verdict with advice; the report card first,
    then the samples."""
    version = result.version
    who = f"<@{requested_by}> " if requested_by.isdigit() else ""
    lines = [f"{who}Training finished: `{version.name}` v{version.version} is live."]
    if version.steps:
        loss = f", final loss {version.final_loss:.4f}" if version.final_loss is not None else ""
        lines.append(f"{version.steps} steps{loss}.")
    lines += quality_lines(version.quality)
    if link := wandb_link(version.wandb_url):
        lines.append(f"W&B: {display_name(link)}")
    elif version.wandb_url:
        lines.append("W&B: logged offline (`wandb sync`)")
    lines.append(f"Try it: `/qwerty prompt_prefix:a photo of a subject:{version.name}`")
    stem = f"{version.name}-v{version.version}"
    card = [fit_image(result.report_card, f"{stem}-report-card", upload_limit)] if result.report_card else []
    samples = [fit_image(png, f"{stem}-sample-{index}", upload_limit)
               for index, png in enumerate(result.validation_images[: MAX_FILES - len(card)])]
    return Reply("\n".join(lines), tuple(card + samples))


def quality_lines(quality: QualityReport | None) -> list[str]:
    """The three DreamBooth scores (the base model's beside them) and the verdict in words with its advice."""
    if quality is None:
        return []
    checkpoint = f" (the checkpoint of step {quality.step})" if quality.step is not None else ""
    return [
        f"Quality{checkpoint}: {scores_text(quality)}; base model: {scores_text(quality.base)}.",
        f"Verdict: {quality.verdict}. {quality.advice}",
    ]


def scores_text(scores: QualityScores) -> str:
    return f"DINO {scores.dino:.3f}, CLIP-I {scores.clip_i:.3f}, CLIP-T {scores.clip_t:.3f}"


def write_report_card(result: TrainResult, directory: Path) -> Path | None:
    """The terminal front ends' copy of the report card: `<subject>-v<n>-report-card.png` in `directory`."""
    if result.report_card is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.version.name}-v{result.version.version}-report-card.png"
    path.write_bytes(result.report_card)
    return path


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
