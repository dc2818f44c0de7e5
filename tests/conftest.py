"""Shared fixtures: a tiny random-weight model on disk, isolated settings, W&B kept in temp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_service.settings import Settings

# W&B writes to the home directory unless told otherwise; the product's own runs go under DATA_DIR,
# but wandb's staging and cache dirs are process-wide. WANDB_DIR is left unset: the product honours it
# (settings.wandb_dir), and each test's runs belong under its own DATA_DIR.
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.pop("WANDB_API_KEY", None)
os.environ.pop("WANDB_DIR", None)


@pytest.fixture(scope="session", autouse=True)
def _wandb_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandb-env")
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        os.environ[name] = str(root / name.lower())
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from gpu_service.engine.tiny_model import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def tiny_quality_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny random-weight CLIP and DINO models, as `python -m gpu_service tiny-quality-models` writes them."""
    from gpu_service.engine.tiny_quality import write_tiny_quality_models

    return write_tiny_quality_models(tmp_path_factory.mktemp("quality-models"))


@pytest.fixture(scope="session")
def flagging_model_dir(tmp_path_factory) -> Path:
    """A tiny model whose (real) safety checker flags every image."""
    from gpu_service.engine.tiny_model import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("flagging-model") / "model", safety_checker="flag-all")


def make_settings(data_dir: Path, base_model: Path | str, **overrides) -> Settings:
    """Settings as a deployment would have them, but never from this checkout's .env files."""
    values = dict(
        BASE_MODEL=str(base_model), DATA_DIR=data_dir, OUTPUTS_DIR=data_dir / "outputs",
        WANDB_MODE="offline",
        # The default quality models are hub ids, which offline cost a long failed download per training;
        # tests of the report turn it on with the tiny models (`python -m gpu_service tiny-quality-models`).
        QUALITY_ENABLED=False,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(tmp_path, tiny_model_dir) -> Settings:
    return make_settings(tmp_path / "data", tiny_model_dir)
