"""Where the product's W&B runs go: WANDB_DIR when set (W&B's own convention), DATA_DIR/wandb otherwise."""

from __future__ import annotations

from bot.settings import BotSettings
from bot.wiring import wandb_config
from gpu_service.engine.train_wandb import WandbTrainingConfig
from gpu_service.settings import Settings


def test_without_wandb_dir_runs_go_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    assert Settings(_env_file=None, DATA_DIR=tmp_path).wandb_dir == tmp_path / "wandb"


def test_wandb_dir_from_the_environment_wins_and_reaches_both_loggers(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "runs"))
    settings = BotSettings(_env_file=None, DATA_DIR=tmp_path / "data")
    assert settings.wandb_dir == tmp_path / "runs"
    assert wandb_config(settings).directory == tmp_path / "runs"  # the bot's generation log
    assert WandbTrainingConfig.from_settings(settings).directory == tmp_path / "runs"  # training


def test_wandb_dir_is_read_from_the_env_file_too(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(f"WANDB_DIR={tmp_path / 'from-file'}\n")
    assert Settings(_env_file=env_file).wandb_dir == tmp_path / "from-file"
