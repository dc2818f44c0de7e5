"""Planted secrets never come out: not at a bad-settings start, not in error replies, not in link lists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.render import training_started
from commands.context import RequestContext
from commands.errors import reply_for
from commands.train import PreparedTraining
from gpu_service.errors import IntakeError, RemoteError, TrainingFailed
from gpu_service.intake import Rejection
from gpu_service.schemas import ImageSource, TrainRequest

ROOT = Path(__file__).resolve().parents[1]
DISCORD_TOKEN = "MTIzNDU2Nzg5.planted-discord-token.Xyz"
WANDB_API_KEY = "planted0wandb0key0000000000000000000000ab"
PASSWORD, QUERY_TOKEN = "planted-password", "planted-query-token"
LINK = f"https://alice:{PASSWORD}@images.example.com/list.txt?token={QUERY_TOKEN}"
SECRETS = (DISCORD_TOKEN, WANDB_API_KEY, PASSWORD, QUERY_TOKEN)


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"ADMIN_ROLE_IDS": DISCORD_TOKEN}, "ADMIN_ROLE_IDS"),  # a secret pasted into the wrong setting
        ({"QUEUE_TIMEOUT_S": "600", "GENERATION_TIMEOUT_S": "300"}, "QUEUE_TIMEOUT_S"),  # checks all settings
        ({"GPU_BACKEND": WANDB_API_KEY}, "GPU_BACKEND"),
    ],
)
def test_a_bad_settings_start_names_the_setting_and_prints_no_value(tmp_path, bad, named):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DISCORD_", "WANDB_"))}
    env.update(PYTHONPATH=str(ROOT), DATA_DIR=str(tmp_path), DISCORD_TOKEN=DISCORD_TOKEN, WANDB_API_KEY=WANDB_API_KEY,
               IMAGES_FILE_URL=LINK, **bad)
    done = subprocess.run([sys.executable, "-m", "bot", "sync"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "invalid settings" in done.stderr and named in done.stderr
    assert leaked(done.stdout + done.stderr) == []


@pytest.mark.parametrize(
    "error",
    [
        TrainingFailed(f"Training j failed (ValueError: bad header {DISCORD_TOKEN}). Run it again."),
        RemoteError(f"The GPU service failed while fetching {LINK}."),
        IntakeError(f"Got 0 usable images\n- {LINK}: not found"),
        KeyError(WANDB_API_KEY),
    ],
)
def test_an_error_reply_carries_no_planted_secret(error):
    reply = reply_for(error)
    assert reply.text and leaked(reply.text) == []


def test_a_rejected_link_list_carries_no_planted_secret():
    request = TrainRequest(job_id="j", subject="qwerty", instance_phrase="qwerty dog", class_phrase="dog",
                           images=(ImageSource(url="https://example.com/a.png"),))
    rejected = tuple(Rejection(f"{LINK}&n={n}", "could not connect") for n in range(20))
    text = training_started(PreparedTraining(request, RequestContext("discord"), rejected, lease=None), "below")
    assert "https://images.example.com/list.txt" in text and leaked(text) == []


def _everything_under(*roots: Path) -> str:
    return "\n".join(path.read_bytes().decode("latin-1") for root in roots for path in root.rglob("*") if path.is_file())


def test_wandb_keys_never_reach_a_repr_or_the_files_of_a_run(tmp_path, monkeypatch):
    """Both W&B logs get the key from settings and hand it to the run only: not in a config, a repr, the
    run's files, or ~/.netrc."""
    from commands.wandb_log import CommunityEvent, WandbConfig, WandbGenerationLog
    from gpu_service.engine.train_wandb import TrainingTracker, WandbTrainingConfig

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    generation = WandbConfig(project="p", mode="offline", directory=tmp_path / "gen", api_key=WANDB_API_KEY)
    training = WandbTrainingConfig(project="p", mode="offline", directory=tmp_path / "train", api_key=WANDB_API_KEY)
    assert leaked(repr(generation) + repr(training)) == []
    log = WandbGenerationLog(generation)
    log.log_event(CommunityEvent("vote", "r1", "1", "2"))
    log.close()
    tracker = TrainingTracker(training)
    tracker.start("job-1", {"steps": 2})
    tracker.log_step(1, 0.5, 1e-4)
    tracker.finish()
    written = _everything_under(tmp_path)
    assert "job-1" in written and leaked(written) == []  # the run was written, without the key
    assert not (tmp_path / "home" / ".netrc").exists()
