"""The buttons and the gallery/admin commands in the terminal shell, by job and image id."""

from __future__ import annotations

import io
import re

import pytest

from bot.shell import Shell
from bot.wiring import make_app_services
from gpu_service.schemas import ImageSource, TrainRequest
from tests.bot.conftest import bot_settings
from tests.support.sleepy_gpu import SleepyGpu


@pytest.fixture
async def shell(tmp_path):
    settings = bot_settings(tmp_path / "data")
    gpu = SleepyGpu()
    app = make_app_services(settings, gpu)
    out = io.StringIO()
    yield Shell(app, settings, out), gpu, out
    await app.close()


async def run(shell: Shell, out: io.StringIO, line: str) -> str:
    start = len(out.getvalue())
    await shell.run_line(line)
    return out.getvalue()[start:]


async def test_reroll_variations_share_vote_top_and_delete_by_job_and_image_id(shell):
    shell, gpu, out = shell
    made = await run(shell, out, '/qwerty prompt_prefix:"a painting of a" count:2 seed:3')
    job = re.search(r"^job (\w+): /reroll", made, re.MULTILINE)[1]
    assert "seeds 3, 4" in made
    rerolled = await run(shell, out, f"/reroll job:{job}")
    assert "a painting of a qwerty dog" in rerolled and gpu.generated[-1].seed is None
    await run(shell, out, f"/variations job:{job} image:1")
    assert gpu.generated[-1].init_image == (shell.settings.OUTPUTS_DIR / f"{job}-1.png").read_bytes()

    shared = await run(shell, out, f"/share job:{job} image:1")
    gallery = shell.settings.OUTPUTS_DIR / "gallery" / f"{job}-1.png"
    assert f"shared {job}-1 to the gallery: {gallery}" in shared and gallery.exists()
    share_id = re.search(r"\(share (\w+)\)", shared)[1]
    assert "already in the gallery" in await run(shell, out, f"/share job:{job} image:1")
    assert "voted: 1 vote(s)" in await run(shell, out, f"/vote share:{share_id}")
    assert "vote taken back: 0 vote(s)" in await run(shell, out, f"/vote share:{share_id}")  # a toggle
    assert "voted: 1 vote(s)" in await run(shell, out, f"/vote share:{share_id}")
    top = await run(shell, out, "/top period:all")
    assert top.startswith(f"1. 1 vote(s) · a painting of a qwerty dog · {job}-1 (share {share_id})")

    deleted = await run(shell, out, f"/delete job:{job}")
    assert f"deleted job {job} (2 image(s))" in deleted
    assert not (shell.settings.OUTPUTS_DIR / f"{job}-0.png").exists()
    assert "was deleted" in await run(shell, out, f"/reroll job:{job}")
    removed = await run(shell, out, f"/remove share:{share_id}")
    assert "removed share" in removed and not gallery.exists()
    assert "no images shared" in await run(shell, out, "/top")
    assert shell.failures == 1  # the reroll of the deleted job


async def test_banned_words_and_the_admin_tools(shell):
    shell, gpu, out = shell
    assert "banned: dragon" in await run(shell, out, '/banned action:add words:"dragon, troll"')
    refused = await run(shell, out, "/qwerty prompt_prefix:dragon")
    assert refused.startswith('error: Your prompt contains "dragon"') and gpu.generated == []
    assert "banned words: dragon, troll" in await run(shell, out, "/banned action:list")
    for job in ("j1", "j2"):
        await gpu.train(TrainRequest(job_id=job, subject="qwerty", instance_phrase="qwerty dog",
                                     class_phrase="dog", images=(ImageSource(name="a"),)))
    assert "▶ v2" in await run(shell, out, "/models")
    assert "qwerty v1 is live now (was v2)" in await run(shell, out, "/rollback subject:qwerty")
    status = await run(shell, out, "/status")
    assert "GPU backend sleepy: reachable, warm" in status and "Queue: 0 running, 0 waiting" in status
    assert "needs `job`" in await run(shell, out, "/share image:1")
    assert "/reroll job:ID" in await run(shell, out, "help")


async def test_export_writes_the_lora_under_the_outputs_folder(shell):
    shell, gpu, out = shell
    await gpu.train(TrainRequest(job_id="j1", subject="qwerty", instance_phrase="qwerty dog", class_phrase="dog",
                                 images=(ImageSource(name="a"),)))
    said = await run(shell, out, "/export subject:qwerty version:1 format:kohya")
    path = shell.settings.OUTPUTS_DIR / "qwerty-v1.safetensors"
    assert f"wrote {path} (kohya format, 1024 bytes)" in said
    assert path.read_bytes().startswith(b"kohya LoRA of qwerty v1")
    assert "needs `version`" in await run(shell, out, "/export subject:qwerty")
    assert "no version 4" in await run(shell, out, "/export subject:qwerty version:4")
    assert gpu.exported == [("qwerty", 1, "kohya")]
