"""A LoRA loaded for a generation while a training loads its models: the loads take turns, none ends on "meta"."""

from __future__ import annotations

import threading

import pytest

from gpu_service.engine.adapters import AdapterSwitcher
from gpu_service.engine.pipeline_loading import load_pipeline
from gpu_service.registry import ModelRegistry
from tests.gpu_service.test_adapters import publish_random_lora

pytestmark = pytest.mark.slow
SUBJECTS = [f"s{number}" for number in range(1, 7)]
ROUNDS = 6


def test_loras_switched_in_while_another_thread_loads_the_base_model_never_land_on_meta(tmp_path, tiny_model_dir):
    registry = ModelRegistry(tmp_path / "registry")
    for seed, subject in enumerate(SUBJECTS, start=1):
        publish_random_lora(registry, tiny_model_dir, subject, f"{subject} dog", seed=seed)
    # One resident LoRA: every switch of subject loads a file, as requests for six subjects would.
    serving = AdapterSwitcher(load_pipeline(str(tiny_model_dir)), registry, max_loaded=1)
    failures: list[str] = []

    def generations() -> None:
        for _ in range(ROUNDS):
            for subject in SUBJECTS:
                try:
                    serving.activate(registry.active(subject))
                except Exception as error:
                    failures.append(f"LoRA {subject}: {error!r}"[:200])

    def training() -> None:  # the training's loads: class images, validation and quality each load a pipeline
        for _ in range(ROUNDS):
            try:
                load_pipeline(str(tiny_model_dir))
            except Exception as error:
                failures.append(f"pipeline: {error!r}"[:200])

    threads = [threading.Thread(target=generations), threading.Thread(target=training)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    on_meta = [name for name, p in serving.pipe.unet.named_parameters() if p.device.type == "meta"]
    assert failures == [] and on_meta == []
    assert serving.bad_versions() == []
