"""The training's W&B run, read back from offline files; W&B failures never fail a training."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import wandb

from gpu_service.engine.train_wandb import TrainingTracker, WandbTrainingConfig, move_live_alias
from gpu_service.registry import METADATA_NAME, WEIGHTS_NAME, ModelRegistry, VersionMetadata
from tests.gpu_service.test_training import IMAGES, TINY, request, tiny_model, train  # noqa: F401 (fixture)
from tests.support.wandb_offline import read_offline_runs

PROJECT = "qwerty-test"


def wandb_env(monkeypatch: pytest.MonkeyPatch, root: Path) -> dict[str, Path]:
    dirs = {key: root / key.lower() for key in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")}
    for key, path in dirs.items():
        path.mkdir(parents=True)
        monkeypatch.setenv(key, str(path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return dirs


@pytest.fixture
def offline(monkeypatch, tmp_path):
    dirs = wandb_env(monkeypatch, tmp_path / "wandb-env")
    wandb.teardown()
    yield dirs
    wandb.teardown()


@pytest.mark.slow
def test_training_run_is_logged_with_its_model_artifact(offline, tiny_model, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    runs_dir = tmp_path / "runs"
    tracker = TrainingTracker(WandbTrainingConfig(project=PROJECT, mode="offline", directory=runs_dir))
    result = train(request("job-wb"), tiny_model, registry, tmp_path / "classes", tracker=tracker)

    (run,) = read_offline_runs(runs_dir, offline["WANDB_DATA_DIR"])
    assert (run.job_type, run.name, run.project, run.exit_code) == ("train", "job-wb", PROJECT, 0)
    assert run.config["subject"] == "rex" and run.config["instance_phrase"] == "qwerty dog"
    assert run.config["learning_rate"] == 1e-4 and run.config["base_model"] == str(tiny_model)
    losses = [row for row in run.history if "train/loss" in row]
    assert [row["_step"] for row in losses] == list(range(1, TINY["max_steps"] + 1))
    assert losses[-1]["train/lr"] == pytest.approx(1e-4)
    assert run.image("train/images", index=2).size == (64, 64)
    assert run.image("validation/images", index=1).size == (64, 64)

    artifact = run.artifact("lora-rex", type="model")
    assert set(artifact.aliases) >= {"job-wb", "version-1", "live"}
    photos = run.artifact("photos-rex", type="dataset")  # offline: kept with the run, no lineage edge
    assert len(photos.entries) == len(IMAGES) and "job-wb" in photos.aliases
    assert artifact.metadata["version"] == 1 and artifact.metadata["job_id"] == "job-wb"
    published = registry.version_dir("rex", result.version.version)
    assert artifact.entries[WEIGHTS_NAME].read_bytes() == (published / WEIGHTS_NAME).read_bytes()
    meta = VersionMetadata.model_validate_json((published / METADATA_NAME).read_text())
    assert meta.wandb_artifact == f"{PROJECT}/lora-rex:job-wb"


class BrokenRun:
    url = None

    def log(self, *args, **kwargs):
        raise ConnectionError("wandb is down")

    def finish(self, exit_code=0):
        raise ConnectionError("wandb is down")


def test_a_failing_wandb_never_fails_the_training(monkeypatch, tiny_model, tmp_path, caplog):
    monkeypatch.setattr(wandb, "init", lambda **kwargs: BrokenRun())
    tracker = TrainingTracker(WandbTrainingConfig(project=PROJECT, mode="offline", directory=tmp_path / "runs"))
    registry = ModelRegistry(tmp_path / "registry")
    with caplog.at_level(logging.WARNING, logger="gpu_service.engine.train_wandb"):
        result = train(request("job-broken"), tiny_model, registry, tmp_path / "classes", tracker=tracker)
    assert registry.active("rex") == result.version
    warnings = [r for r in caplog.records if r.name == "gpu_service.engine.train_wandb"]
    assert len(warnings) == 1 and "wandb is down" in warnings[0].getMessage()


def test_a_tracker_that_cannot_start_does_nothing(monkeypatch, tmp_path, caplog):
    def refuse(**kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", refuse)
    tracker = TrainingTracker(WandbTrainingConfig(project=PROJECT, directory=tmp_path))
    with caplog.at_level(logging.WARNING):
        tracker.start("job", {"a": 1})
        tracker.log_step(1, 0.5, 1e-4)
        tracker.log_model(tmp_path / "missing", subject="rex", job_id="job", version=1, metadata={})
        tracker.finish()
    assert not tracker.active and tracker.url is None and tracker.artifact_ref("rex", "job") is None
    assert len([r for r in caplog.records if "no network" in r.getMessage()]) == 1


def test_disabled_tracker_never_imports_a_run(monkeypatch):
    monkeypatch.setattr(wandb, "init", lambda **kwargs: pytest.fail("started a run"))
    tracker = TrainingTracker(WandbTrainingConfig(project=PROJECT, mode="disabled"))
    tracker.start("job", {})
    tracker.log_step(1, 0.5, 1e-4)
    assert not tracker.active


def png(color: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


PHOTOS = [png((200, 0, 0)), png((0, 200, 0))]


def test_offline_the_photos_and_the_lora_are_both_kept_with_the_run(offline, tmp_path):
    weights = tmp_path / WEIGHTS_NAME
    weights.write_bytes(b"lora")
    tracker = TrainingTracker(WandbTrainingConfig(project=PROJECT, mode="offline", directory=tmp_path / "runs"))
    tracker.start("job-1", {})
    tracker.log_dataset(PHOTOS, subject="dog@700", job_id="job-1")
    tracker.log_model(weights, subject="dog@700", job_id="job-1", version=3, metadata={})
    tracker.finish()

    (run,) = read_offline_runs(tmp_path / "runs", offline["WANDB_DATA_DIR"])
    photos = run.artifact("photos-dog.g700", type="dataset")
    assert sorted(entry.read_bytes() for entry in photos.entries.values()) == sorted(PHOTOS)
    assert photos.metadata == {"job_id": "job-1", "photos": 2}
    assert set(run.artifact("lora-dog.g700", type="model").aliases) >= {"job-1", "version-3", "live"}
    assert run.used_artifacts == []  # wandb refuses use_artifact offline


def test_online_the_run_uses_the_photos_before_it_logs_the_lora_made_from_them(offline, tmp_path, monkeypatch):
    """The calls on the real wandb run object, as an online run receives them (no W&B server here)."""
    weights = tmp_path / WEIGHTS_NAME
    weights.write_bytes(b"lora")
    tracker = TrainingTracker(WandbTrainingConfig(project=PROJECT, mode="offline", directory=tmp_path / "runs"))
    tracker.start("job-1", {})
    run, calls = tracker._run, []
    monkeypatch.setattr(wandb.Run, "offline", property(lambda self: False))
    monkeypatch.setattr(run, "use_artifact", lambda artifact, **kw: calls.append(("use", artifact, kw)))
    monkeypatch.setattr(run, "log_artifact", lambda artifact, **kw: calls.append(("log", artifact, kw)))
    tracker.log_dataset(PHOTOS, subject="rex", job_id="job-1")
    tracker.log_model(weights, subject="rex", job_id="job-1", version=1, metadata={})
    monkeypatch.undo()
    tracker.finish()

    assert [(kind, artifact.name, artifact.type) for kind, artifact, _ in calls] == [
        ("use", "photos-rex", "dataset"), ("log", "lora-rex", "model")]
    dataset = calls[0][1]
    assert sorted(dataset.manifest.entries) == ["photo-00.png", "photo-01.png"]
    assert calls[1][2]["aliases"] == ["job-1", "version-1", "live"]


def test_the_live_alias_is_not_moved_offline_or_without_an_artifact(monkeypatch, tmp_path, caplog):
    registry = ModelRegistry(tmp_path / "registry")
    for job_id, ref in (("j1", f"{PROJECT}/lora-rex:j1"), ("j2", None)):
        (registry.staging_dir("rex", job_id) / WEIGHTS_NAME).write_bytes(b"lora")
        registry.publish("rex", job_id, VersionMetadata(job_id=job_id, subject="rex", instance_phrase="rex dog",
                                                        class_phrase="dog", base_model="sd", wandb_artifact=ref))
    monkeypatch.setattr(wandb, "Api", lambda **kwargs: pytest.fail("contacted W&B"))
    with caplog.at_level(logging.INFO, logger="gpu_service.engine.train_wandb"):
        assert not move_live_alias(WandbTrainingConfig(project=PROJECT, mode="offline"), registry, "rex", 1)
        assert not move_live_alias(WandbTrainingConfig(project=PROJECT, mode="online"), registry, "rex", 2)
    assert f"offline: the live alias stays where it was (rex v1: {PROJECT}/lora-rex:j1)" in caplog.text
    assert "online: the live alias stays where it was (rex v2: no artifact)" in caplog.text


def test_the_config_comes_from_the_settings_with_the_key_kept_out_of_its_repr(tmp_path):
    from gpu_service.settings import Settings

    settings = Settings(_env_file=None, DATA_DIR=tmp_path, PROJECT_NAME="p", WANDB_API_KEY="k" * 40)
    config = WandbTrainingConfig.from_settings(settings)
    assert (config.project, config.mode, config.directory) == ("p", settings.wandb_mode, settings.wandb_dir)
    assert config.api_key == "k" * 40
    assert "k" * 40 not in repr(config)
