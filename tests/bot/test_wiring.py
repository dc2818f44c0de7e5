from __future__ import annotations

from bot.wiring import keep_wandb_files_in_data_dir
from tests.conftest import make_settings


def test_wandb_files_go_under_data_dir_unless_the_environment_says_otherwise(tmp_path):
    environ = {"WANDB_CACHE_DIR": "/somewhere/else"}
    keep_wandb_files_in_data_dir(make_settings(tmp_path / "data", "unused"), environ)
    assert environ["WANDB_DATA_DIR"] == str((tmp_path / "data").resolve() / "wandb-home" / "data")
    assert environ["WANDB_CONFIG_DIR"].startswith(str((tmp_path / "data").resolve()))
    assert environ["WANDB_CACHE_DIR"] == "/somewhere/else"
