"""The first load downloads gigabytes: the hub's download bars stay on while the libraries' own go quiet."""

from __future__ import annotations

from huggingface_hub import utils as hub_utils
from transformers.utils import logging as transformers_logging

from gpu_service.engine.pipeline_loading import load_pipeline


def test_loading_the_pipeline_leaves_the_hubs_download_bars_on(tiny_model_dir):
    hub_utils.disable_progress_bars()
    load_pipeline(str(tiny_model_dir), device="cpu")
    assert not hub_utils.are_progress_bars_disabled()
    assert not transformers_logging.is_progress_bar_enabled()
