"""The report card: one PNG an admin reads in a few seconds to judge a new version.

Top to bottom: the training photos; for each validation prompt, the base model's samples beside the new
version's (same seeds); the loss curve; the three scores next to the base model's and the paper's.
Pillow only, with its bundled font.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

THUMB = 96
GAP = 8
MARGIN = 16
TEXT = 14
CURVE_HEIGHT = 140
BACKGROUND, INK, MUTED, ACCENT = (255, 255, 255), (20, 20, 20), (120, 120, 120), (40, 110, 220)
WITHHELD = (210, 210, 210)
METRICS = (("DINO", "dino"), ("CLIP-I", "clip_i"), ("CLIP-T", "clip_t"))


@dataclass(frozen=True)
class CardContent:
    title: str
    verdict_line: str
    photos: Sequence[Image.Image]
    prompts: Sequence[str]
    base_samples: Sequence[Sequence[Image.Image | None]]  # per prompt; None where the checker withheld one
    new_samples: Sequence[Sequence[Image.Image | None]]
    losses: Sequence[tuple[int, float]]  # (step, loss)
    scores: dict[str, float]  # dino, clip_i, clip_t of the new version
    base_scores: dict[str, float]
    paper_scores: dict[str, float]  # DreamBooth on SD, Table 1
    paper_real: dict[str, float]  # real photos, Table 1 (no CLIP-T)


def render_report_card(content: CardContent) -> bytes:
    """The card as PNG bytes."""
    font = ImageFont.load_default(size=TEXT)
    samples = max([len(row) for row in [*content.base_samples, *content.new_samples]] or [1])
    width = max(2 * MARGIN + (2 * samples) * (THUMB + GAP) + 3 * GAP, 640)
    sections = [
        _text_block([content.title, content.verdict_line], width, font),
        _caption("Training photos", width, font),
        _thumb_rows(content.photos, width),
        _caption("Samples per prompt: base model (left) | this version (right), same seeds", width, font),
    ]
    for prompt, base, new in zip(content.prompts, content.base_samples, content.new_samples, strict=True):
        sections += [_text_block([prompt], width, font, color=MUTED), _sample_row(base, new, samples, width)]
    sections += [
        _caption("Training loss", width, font), _loss_curve(content.losses, width, font),
        _caption("Scores (higher is better; paper: DreamBooth, Ruiz et al. 2023)", width, font),
        _score_table(content, width, font),
    ]
    return _png(_stack(sections, width))


def _text_block(lines: Sequence[str], width: int, font, color=INK) -> Image.Image:
    height = GAP + len(lines) * (TEXT + 6)
    block = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(block)
    for index, line in enumerate(lines):
        draw.text((MARGIN, GAP // 2 + index * (TEXT + 6)), _fit(line, width, font), fill=color, font=font)
    return block


def _caption(text: str, width: int, font) -> Image.Image:
    block = _text_block([text], width, font, color=ACCENT)
    ImageDraw.Draw(block).line([(MARGIN, block.height - 2), (width - MARGIN, block.height - 2)], fill=ACCENT)
    return block


def _fit(text: str, width: int, font) -> str:
    """The text cut with an ellipsis to fit between the margins."""
    while text and font.getlength(text) > width - 2 * MARGIN:
        text = text[:-2] + "…"
    return text


def _thumb(image: Image.Image | None) -> Image.Image:
    if image is None:
        return Image.new("RGB", (THUMB, THUMB), WITHHELD)
    return image.convert("RGB").resize((THUMB, THUMB), Image.Resampling.LANCZOS)


def _thumb_rows(images: Sequence[Image.Image], width: int) -> Image.Image:
    per_row = max(1, (width - 2 * MARGIN + GAP) // (THUMB + GAP))
    rows = max(1, -(-len(images) // per_row))
    block = Image.new("RGB", (width, rows * (THUMB + GAP) + GAP), BACKGROUND)
    for index, image in enumerate(images):
        row, column = divmod(index, per_row)
        block.paste(_thumb(image), (MARGIN + column * (THUMB + GAP), GAP + row * (THUMB + GAP)))
    return block


def _sample_row(base: Sequence, new: Sequence, samples: int, width: int) -> Image.Image:
    block = Image.new("RGB", (width, THUMB + GAP), BACKGROUND)
    right = MARGIN + samples * (THUMB + GAP) + 2 * GAP
    for index, image in enumerate(base):
        block.paste(_thumb(image), (MARGIN + index * (THUMB + GAP), 0))
    for index, image in enumerate(new):
        block.paste(_thumb(image), (right + index * (THUMB + GAP), 0))
    divider = right - GAP - GAP // 2
    ImageDraw.Draw(block).line([(divider, 0), (divider, THUMB)], fill=MUTED, width=2)
    return block


def _loss_curve(losses: Sequence[tuple[int, float]], width: int, font) -> Image.Image:
    block = Image.new("RGB", (width, CURVE_HEIGHT + 2 * GAP), BACKGROUND)
    draw = ImageDraw.Draw(block)
    left, top, right, bottom = MARGIN + 60, GAP, width - MARGIN, GAP + CURVE_HEIGHT - TEXT - 4
    draw.rectangle([left, top, right, bottom], outline=MUTED)
    if not losses:
        draw.text((left + GAP, top + GAP), "no steps were run in this session", fill=MUTED, font=font)
        return block
    steps, values = [s for s, _ in losses], [v for _, v in losses]
    low, high = min(values), max(values)
    span, step_span = (high - low) or 1.0, (steps[-1] - steps[0]) or 1
    points = [
        (left + (s - steps[0]) / step_span * (right - left), bottom - (v - low) / span * (bottom - top))
        for s, v in losses
    ]
    draw.line(points if len(points) > 1 else points * 2, fill=ACCENT, width=2)
    draw.text((MARGIN, top), f"{high:.3f}", fill=MUTED, font=font)
    draw.text((MARGIN, bottom - TEXT), f"{low:.3f}", fill=MUTED, font=font)
    draw.text((left, bottom + 2), f"step {steps[0]}", fill=MUTED, font=font)
    end = f"step {steps[-1]}"
    draw.text((right - font.getlength(end), bottom + 2), end, fill=MUTED, font=font)
    return block


def _score_table(content: CardContent, width: int, font) -> Image.Image:
    header = ("", "this version", "base model", "paper (SD)", "paper: real")  # Ruiz et al. 2023, Table 1
    rows = [header]
    for label, key in METRICS:
        real = content.paper_real.get(key)
        rows.append((
            label, f"{content.scores[key]:.3f}", f"{content.base_scores[key]:.3f}",
            f"{content.paper_scores[key]:.3f}", "n/a" if real is None else f"{real:.3f}",
        ))
    column = (width - 2 * MARGIN) // len(header)
    block = Image.new("RGB", (width, len(rows) * (TEXT + 8) + GAP), BACKGROUND)
    draw = ImageDraw.Draw(block)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            color = INK if r and c == 1 else MUTED
            draw.text((MARGIN + c * column, GAP // 2 + r * (TEXT + 8)), cell, fill=color, font=font)
    return block


def _stack(blocks: Sequence[Image.Image], width: int) -> Image.Image:
    card = Image.new("RGB", (width, sum(b.height for b in blocks) + MARGIN), BACKGROUND)
    top = MARGIN // 2
    for block in blocks:
        card.paste(block, (0, top))
        top += block.height
    return card


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
