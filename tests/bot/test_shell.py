"""`python -m bot shell`: the slash commands from standard input, images saved under outputs/."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.shell import run_shell
from tests.bot.conftest import bot_settings
from tests.support.sleepy_gpu import SleepyGpu

ROOT = Path(__file__).resolve().parents[2]


def photo_folder(directory: Path, count: int = 3) -> Path:
    directory.mkdir(parents=True)
    for n in range(count):
        Image.new("RGB", (80, 80), (n * 60, 100, 200)).save(directory / f"{n}.png")
    return directory


async def shell(settings, script: str, gpu) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_shell(settings, stdin=io.StringIO(script), stdout=out, gpu=gpu)
    return code, out.getvalue()


async def test_a_script_trains_then_generates_and_images_land_in_outputs(tmp_path):
    settings = bot_settings(tmp_path / "data")
    photos = photo_folder(tmp_path / "photos")
    gpu = SleepyGpu()
    code, out = await shell(settings, f"""
        # the demo: train the subject, then use it
        /train urls:{photos} steps:4
        /qwerty prompt_prefix:"a gorgeous painting of a" prompt_postfix:"in space" count:2 seed:3
    """, gpu)
    assert code == 0, out
    assert "trained qwerty v1 (live now)" in out
    assert "a gorgeous painting of a qwerty dog in space" in out and "seeds 3, 4" in out
    written = [Path(line.removeprefix("wrote ")) for line in out.splitlines() if line.startswith("wrote ")]
    assert [p.parent for p in written] == [settings.OUTPUTS_DIR] * 3  # a training sample, then 2 images
    assert all(Image.open(p).format == "PNG" for p in written)
    assert json.loads(written[1].with_suffix(".json").read_text())["seed"] == 3
    assert [i.name for i in gpu.trained[0].images] == ["0.png", "1.png", "2.png"]


async def test_errors_are_printed_through_the_central_mapping_and_the_exit_status_says_so(tmp_path):
    code, out = await shell(bot_settings(tmp_path / "data"), "/qwerty count:2\n/qwerty prompt_prefix:a count:9\n"
                            "/draw\nhelp\n/qwerty prompt_prefix:a\n", SleepyGpu())
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "prompt_prefix" in errors[0] and "`count`" in out and "Unknown command" in errors[2]
    assert "Commands (options as name:value" in out
    assert out.count("wrote ") == 1  # the last line still ran


async def test_quit_stops_reading(tmp_path):
    gpu = SleepyGpu()
    code, _ = await shell(bot_settings(tmp_path / "data"), "quit\n/qwerty prompt_prefix:a\n", gpu)
    assert code == 0 and gpu.generated == []


@pytest.mark.slow
def test_python_m_bot_shell_on_the_tiny_model_driven_through_stdin(tmp_path, tiny_model_dir, tiny_quality_dirs):
    """The real thing, as `make demo` runs it: a subprocess, the local engine, a script on standard input
    that trains the demo subject (with its quality report) and then draws it."""
    from gpu_service.demo_images import write_demo_images

    write_demo_images(tmp_path / "photos", 3)
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    env.update(PYTHONPATH=str(ROOT), BASE_MODEL=str(tiny_model_dir), DATA_DIR=str(tmp_path / "data"),
               OUTPUTS_DIR=str(tmp_path / "outputs"), WANDB_MODE="offline", GPU_BACKEND="local",
               TRAIN_CLASS_IMAGES="2", TRAIN_CHECKPOINT_EVERY="2", QUALITY_CLIP_MODEL=str(tiny_quality_dirs[0]),
               QUALITY_DINO_MODEL=str(tiny_quality_dirs[1]), QUALITY_SAMPLES="1")
    script = (f"/train urls:{tmp_path / 'photos'} steps:3\n"
              '/qwerty prompt_prefix:"a gorgeous painting of a" prompt_postfix:"in space" count:2 steps:2\nquit\n')
    done = subprocess.run([sys.executable, "-m", "bot", "shell"], cwd=tmp_path, env=env, input=script,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trained qwerty v1 (live now)" in done.stdout
    assert all(name in done.stdout for name in ("DINO", "CLIP-I", "CLIP-T")) and "report card: " in done.stdout
    assert "a gorgeous painting of a qwerty dog in space" in done.stdout and "qwerty v1" in done.stdout
    written = [Path(line.removeprefix("wrote ")) for line in done.stdout.splitlines() if line.startswith("wrote ")]
    images = [p for p in written if "sample" not in p.name]
    assert len(images) == 2 and all(Image.open(p).size == (64, 64) for p in images)


def test_the_history_is_kept_between_sessions(tmp_path):
    readline = pytest.importorskip("readline")
    from bot.shell import line_history

    path = tmp_path / "data" / "shell_history"
    readline.clear_history()
    with line_history(path):
        readline.add_history('/qwerty prompt_prefix:"a painting of a"')
    readline.clear_history()
    with line_history(path):
        assert readline.get_history_item(readline.get_current_history_length()) == '/qwerty prompt_prefix:"a painting of a"'
