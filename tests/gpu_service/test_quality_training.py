"""The quality report after a training on the tiny models: metadata, the card, checkpoint choice, W&B."""

from __future__ import annotations

import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from gpu_service.engine import train_quality, training
from gpu_service.engine.quality import PAPER_DREAMBOOTH_SD
from gpu_service.engine.report_card import THUMB
from gpu_service.engine.tiny_quality import write_tiny_quality_models
from gpu_service.engine.train_config import training_config
from gpu_service.engine.train_quality import QualitySettings
from gpu_service.engine.train_wandb import TrainingTracker, WandbTrainingConfig
from gpu_service.engine.training_job import quality_settings
from gpu_service.settings import Settings
from gpu_service.registry import METADATA_NAME, WEIGHTS_NAME, ModelRegistry, VersionMetadata
from tests.conftest import make_settings
from tests.gpu_service.test_training import IMAGES, TINY, request, tiny_model, train  # noqa: F401 (fixture)
from tests.support.wandb_offline import read_offline_runs

pytestmark = pytest.mark.slow
SAMPLES = 2
CONTRACT = {"dino", "clip_i", "clip_t", "base", "verdict", "prompts", "models"}


@pytest.fixture(scope="module")
def quality_models(tmp_path_factory) -> QualitySettings:
    clip, dino = write_tiny_quality_models(tmp_path_factory.mktemp("quality-models"))
    return QualitySettings(clip_model=str(clip), dino_model=str(dino), samples=SAMPLES)


def decode(png: bytes) -> Image.Image:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return image


@pytest.fixture(scope="module")
def scored(tiny_model, quality_models, tmp_path_factory):
    """One training with the report, W&B offline, and the kept checkpoints (steps 4 and 6) both scored."""
    root = tmp_path_factory.mktemp("scored")
    registry = ModelRegistry(root / "registry")
    config = training_config(**TINY | dict(learning_rate=1e-3))
    runs = root / "runs"
    tracker = TrainingTracker(WandbTrainingConfig(project="quality-test", mode="offline", directory=runs))
    result = train(request("job-q"), tiny_model, registry, root / "classes", config=config, tracker=tracker,
                   quality=quality_models)
    return registry, result, config, runs


def test_version_metadata_holds_the_quality_contract(scored, quality_models):
    registry, result, config, _ = scored
    directory = registry.version_dir("rex", result.version.version)
    quality = VersionMetadata.model_validate_json((directory / METADATA_NAME).read_text()).quality
    assert CONTRACT <= quality.keys()
    assert set(quality["base"]) == {"dino", "clip_i", "clip_t"}
    assert quality["verdict"] in {"ok", "underfit", "overfit"}
    assert quality["prompts"] == config.validation_prompts_for("qwerty dog")
    assert quality["models"] == {"dino": quality_models.dino_model, "clip": quality_models.clip_model}
    assert all(-1.0 <= quality[name] <= 1.0 for name in ("dino", "clip_i", "clip_t"))
    assert quality["step"] in {4, 6} and [c["step"] for c in quality["checkpoints"]] == [6, 4]
    assert result.version.quality.dino == quality["dino"] and result.version.quality.verdict == quality["verdict"]
    assert registry.active("rex").quality == result.version.quality


def test_the_new_lora_scores_differently_from_the_base_model_on_the_same_seeds(scored):
    registry, result, _, _ = scored
    quality = result.version.quality
    assert (quality.dino, quality.clip_i, quality.clip_t) != (quality.base.dino, quality.base.clip_i,
                                                             quality.base.clip_t)


def test_report_card_is_published_beside_the_weights_and_returned(scored):
    registry, result, config, _ = scored
    card = registry.version_dir("rex", result.version.version) / train_quality.REPORT_CARD
    assert result.report_card is not None and card.read_bytes() == result.report_card
    image = decode(result.report_card)
    assert image.format == "PNG" and image.width >= 2 * SAMPLES * THUMB
    assert image.height > (1 + len(config.validation_prompts)) * THUMB  # photos, then a row per prompt
    replay = training.previous_result(registry, result.version, "job-q")
    assert replay.report_card == result.report_card


def test_the_published_weights_are_the_chosen_checkpoints(scored, tiny_model, quality_models, tmp_path):
    """Re-scoring the published file alone gives the recorded scores of the step that won."""
    registry, result, config, _ = scored
    quality = result.version.quality
    job, photos = training.prepare_job(
        request("job-check"), IMAGES, base_model=str(tiny_model), registry=ModelRegistry(tmp_path),
        config=config, instance_prefix="a photo of a", instance_postfix="", class_cache_dir=tmp_path / "c",
    )
    weights = registry.version_dir("rex", result.version.version) / WEIGHTS_NAME
    (job.staging / WEIGHTS_NAME).write_bytes(weights.read_bytes())
    rescored = train_quality.assess_quality(job, photos, quality_models, [], final_step=quality.step)
    assert rescored.quality["dino"] == pytest.approx(quality.dino, abs=1e-5)
    assert rescored.quality["clip_t"] == pytest.approx(quality.clip_t, abs=1e-5)


def test_scores_go_to_the_wandb_summary_and_a_table_of_samples(scored):
    registry, result, config, runs = scored
    (run,) = read_offline_runs(runs, os.environ["WANDB_DATA_DIR"])
    quality = result.version.quality
    assert run.summary["quality/dino"] == pytest.approx(quality.dino)
    assert run.summary["quality/base_clip_t"] == pytest.approx(quality.base.clip_t)
    assert run.summary["quality/verdict"] == quality.verdict and run.summary["quality/step"] == quality.step
    rows = run.table_rows("quality/samples")
    prompts = config.validation_prompts_for("qwerty dog")
    assert len(rows) == 3 * len(prompts) * SAMPLES  # the base model and two checkpoints
    base = [r for r in rows if r["model"] == "base"]
    winner = [r for r in rows if r["model"] == f"step-{quality.step}"]
    assert [r["seed"] for r in base] == [r["seed"] for r in winner]
    assert np.mean([r["dino"] for r in winner]) == pytest.approx(quality.dino)
    assert np.mean([r["clip_t"] for r in base]) == pytest.approx(quality.base.clip_t)
    assert rows[0]["image"].size == (64, 64) and rows[0]["prompt"] == prompts[0]
    assert run.image("quality/report_card").width > 64


def test_checkpoint_choice_prefers_ok_then_the_highest_dino():
    from gpu_service.engine.quality import Scores
    from gpu_service.engine.train_quality import ScoredSet, choose

    def scored_set(step, dino, verdict):
        return ScoredSet(step, [], [], Scores(dino, 0.8, 0.3), verdict)

    newest_first = [scored_set(6, 0.75, "overfit"), scored_set(4, 0.66, "ok"), scored_set(2, 0.62, "ok")]
    assert choose(newest_first).step == 4
    assert choose([scored_set(6, 0.5, "underfit"), scored_set(4, 0.7, "overfit")]).step == 6


def test_quality_off_or_failing_never_costs_the_version(tiny_model, tmp_path, caplog):
    registry = ModelRegistry(tmp_path / "registry")
    missing = QualitySettings(clip_model=str(tmp_path / "no-clip"), dino_model=str(tmp_path / "no-dino"))
    with caplog.at_level(logging.ERROR, logger="gpu_service.engine.training"):
        result = train(request("job-nq"), tiny_model, registry, tmp_path / "classes", quality=missing)
    assert registry.active("rex") == result.version
    assert result.version.quality is None and result.report_card is None
    assert "quality report failed" in caplog.text
    assert not (registry.version_dir("rex", 1) / train_quality.REPORT_CARD).exists()


def test_settings_switch_the_report_and_name_its_models(tmp_path):
    settings = make_settings(tmp_path, "base", QUALITY_ENABLED=True, QUALITY_CLIP_MODEL="c",
                             QUALITY_DINO_MODEL="d", QUALITY_SAMPLES=3)
    assert quality_settings(settings) == QualitySettings(clip_model="c", dino_model="d", samples=3)
    assert quality_settings(make_settings(tmp_path, "base", QUALITY_ENABLED=False)) is None
    defaults = Settings(_env_file=None)
    assert (defaults.QUALITY_ENABLED, defaults.QUALITY_CLIP_MODEL, defaults.QUALITY_DINO_MODEL,
            defaults.QUALITY_SAMPLES) == (True, "openai/clip-vit-base-patch32", "facebook/dino-vits16", 4)
    assert PAPER_DREAMBOOTH_SD == {"dino": 0.668, "clip_i": 0.803, "clip_t": 0.305}
