"""The "Training finished" message on every front end: DINO, CLIP-I, CLIP-T, the verdict, the report card."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bot.shell import run_shell
from gpu_service.schemas import QualityReport, TrainRequest, TrainResult
from tests.bot.conftest import ADMIN_ID, bot_settings, running_bot
from tests.bot.test_shell import photo_folder
from tests.bot.test_train_discord import photos
from tests.support.sleepy_gpu import SleepyGpu

QUALITY = QualityReport(dino=0.6681, clip_i=0.8032, clip_t=0.2049, verdict="overfit", step=4,
                        base={"dino": 0.2, "clip_i": 0.5, "clip_t": 0.3141})


def card_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (250, 250, 250)).save(buffer, format="PNG")
    return buffer.getvalue()


class ScoredGpu(SleepyGpu):
    """The stand-in GPU, its results scored and carded as the engine's quality report does."""

    async def train(self, request: TrainRequest, on_progress=None) -> TrainResult:
        result = await super().train(request, on_progress)
        version = result.version.model_copy(update={"quality": QUALITY})
        return result.model_copy(update={"version": version, "report_card": card_png()})


async def test_the_shell_prints_the_scores_and_verdict_and_writes_the_card_under_outputs(tmp_path):
    settings = bot_settings(tmp_path / "data")
    out = io.StringIO()
    script = f"/train urls:{photo_folder(tmp_path / 'photos')} steps:4\n"
    code = await run_shell(settings, stdin=io.StringIO(script), stdout=out, gpu=ScoredGpu())
    printed = out.getvalue()
    assert code == 0, printed
    assert "DINO 0.668, CLIP-I 0.803, CLIP-T 0.205" in printed and "Verdict: overfit." in printed
    assert "Try fewer steps" in printed
    [card] = [Path(line.removeprefix("report card: "))
              for line in printed.splitlines() if line.startswith("report card: ")]
    assert card.parent == settings.OUTPUTS_DIR and card.read_bytes() == card_png()


async def test_discord_posts_the_card_first_with_the_scores_and_verdict(stub, tmp_path):
    async with running_bot(stub, bot_settings(tmp_path / "data"), ScoredGpu()):
        await stub.slash_command("train", {**photos(3), "steps": 4}, user_id=ADMIN_ID)
        result = await stub.messages.wait_for(lambda s: "finished" in (s.content or ""), timeout=10)
    assert "DINO 0.668, CLIP-I 0.803, CLIP-T 0.205" in result.content and "Verdict: overfit." in result.content
    assert result.files[0].filename == "qwerty-v1-report-card.png" and result.files[0].data == card_png()
    assert len(result.files) >= 2  # the samples follow the card
