"""`python -m bot model` (`make model`): the training target, from IMAGES_FILE_URL or files."""

from __future__ import annotations

import argparse

import pytest
from aiohttp import web

from bot.model_cli import run_model
from commands.context import RequestContext
from commands.jobs import JobRecord, JobStore
from gpu_service.demo_images import write_demo_images
from gpu_service.registry import ModelRegistry
from tests.bot.conftest import bot_settings

pytestmark = pytest.mark.slow


def model_args(*images: str) -> argparse.Namespace:
    return argparse.Namespace(images=list(images), subject=None, steps=None)


def fast_settings(tmp_path, tiny_model_dir, **overrides):
    return bot_settings(tmp_path / "data", tiny_model_dir, TRAIN_STEPS=4, TRAIN_CLASS_IMAGES=2,
                        TRAIN_CHECKPOINT_EVERY=2, WANDB_MODE="offline", **overrides)


async def test_trains_from_the_url_list_in_images_file_url(tmp_path, tiny_model_dir, capsys):
    photos = write_demo_images(tmp_path / "photos", 3)
    app = web.Application()
    app.router.add_static("/photos", tmp_path / "photos")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    listing = "\n".join(f"{base}/photos/{path.name}" for path in photos) + f"\n{base}/photos/missing.png\n"
    (tmp_path / "photos" / "list.txt").write_text(listing)
    settings = fast_settings(tmp_path, tiny_model_dir, IMAGES_FILE_URL=f"{base}/photos/list.txt",
                             ALLOW_PRIVATE_URLS=True)
    try:
        assert await run_model(model_args(), settings) == 0
    finally:
        await runner.cleanup()
    printed = capsys.readouterr().out
    assert "version 1 of 'qwerty' is live" in printed and "W&B run: " in printed
    assert "missing.png" in printed  # the rejected image is named, the job goes on without it
    assert ModelRegistry(settings.registry_dir).active("qwerty").version == 1


async def test_local_images_train_and_a_bad_folder_fails_cleanly(tmp_path, tiny_model_dir, capsys):
    settings = fast_settings(tmp_path, tiny_model_dir)
    killed = JobRecord.new("killed-run", "train", RequestContext(front_end="cli"), {}, state="running")
    store = JobStore(settings.DATA_DIR / "jobs.sqlite3")
    await store.add(killed)
    await store.close()
    assert await run_model(model_args(str(tmp_path / "nothing-here")), settings) == 2
    assert "error:" in capsys.readouterr().err
    write_demo_images(tmp_path / "photos", 3)
    assert await run_model(model_args(str(tmp_path / "photos")), settings) == 0
    assert ModelRegistry(settings.registry_dir).active("qwerty").version == 1
    store = JobStore(settings.DATA_DIR / "jobs.sqlite3")
    assert (await store.get("killed-run")).state == "failed"  # an earlier killed run no longer lingers
    await store.close()
