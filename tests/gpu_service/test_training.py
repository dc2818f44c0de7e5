"""DreamBooth-LoRA training on the tiny model: config checks, learning, resume, idempotency, publishing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gpu_service.engine import training
from gpu_service.engine.pipeline_loading import load_pipeline
from gpu_service.engine.train_config import TrainingConfig, training_config
from gpu_service.engine.train_data import build_train_data, cache_embeddings, cache_latents
from gpu_service.engine.train_loop import batch_counters, build_trainer, evaluate_loss, train_step
from gpu_service.engine.train_model import add_lora, choose_precision, load_models
from gpu_service.errors import InvalidRequest, TrainingFailed
from gpu_service.registry import WEIGHTS_NAME, ModelRegistry, VersionMetadata
from gpu_service.schemas import ImageSource, TrainProgress, TrainRequest

PREFIX = "a photo of a"
TINY = dict(
    max_steps=6, num_class_images=4, class_inference_steps=2, validation_steps=2, checkpoint_every=2,
    validation_prompts=("a photo of a {phrase}", "a {phrase} in the snow"),
)


class Interrupt(Exception):
    """Raised from a progress callback to stop a training, as a crash would."""


def make_png(index: int, side: int = 64) -> bytes:
    pixels = np.random.default_rng(index).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = [make_png(i) for i in range(3)]


def request(job_id: str, subject: str = "rex", class_phrase: str = "dog", **changes) -> TrainRequest:
    return TrainRequest(
        job_id=job_id, subject=subject, instance_phrase=f"qwerty {class_phrase}", class_phrase=class_phrase,
        images=tuple(ImageSource(data=data) for data in IMAGES), requested_by="tester", **changes,
    )


def train(req: TrainRequest, model: Path, registry: ModelRegistry, cache: Path, **kwargs):
    kwargs.setdefault("config", training_config(**TINY))
    kwargs.setdefault("progress_interval_s", 0)
    return training.train_version(
        req, IMAGES, base_model=str(model), registry=registry, instance_prefix=PREFIX, instance_postfix="",
        class_cache_dir=cache, **kwargs,
    )


def stop_at(step: int, seen: list[TrainProgress] | None = None):
    def callback(progress: TrainProgress) -> None:
        if seen is not None:
            seen.append(progress)
        if progress.state == "training" and progress.step == step and progress.loss is not None:
            raise Interrupt(f"stopped at step {step}")

    return callback


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def render(pipe, prompt: str, seed: int, config: TrainingConfig) -> np.ndarray:
    generator = torch.Generator("cpu").manual_seed(seed)
    image = pipe(
        prompt=prompt, num_inference_steps=config.validation_steps, guidance_scale=config.validation_guidance,
        generator=generator, width=64, height=64,
    ).images[0]
    return np.asarray(image)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from gpu_service.engine.tiny_model import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def class_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("class-cache")


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


# Config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lora_rank", 2), ("lora_rank", 256), ("max_steps", 0), ("learning_rate", 0.0),
        ("resolution", 100), ("resolution", 32), ("batch_size", 0), ("num_class_images", 0),
        ("validation_prompts", ("no placeholder",)), ("validation_prompts", ("{phrase} {other}",)),
        ("lr_scheduler", "exponential"), ("mixed_precision", "fp8"), ("prior_loss_weight", -1.0),
        ("unknown_knob", 1),
    ],
)
def test_config_refuses_bad_fields_naming_them(field, value):
    with pytest.raises(InvalidRequest, match=field):
        training_config(**{field: value})


def test_config_defaults_follow_the_dreambooth_lora_recipe():
    config = TrainingConfig()
    assert (config.learning_rate, config.lora_rank, config.effective_lora_alpha, config.max_steps) == (
        1e-4, 8, 8, 500)
    assert (config.with_prior_preservation, config.prior_loss_weight, config.num_class_images) == (True, 1.0, 100)
    assert (config.lr_scheduler, config.max_grad_norm, config.resolution) == ("constant", 1.0, None)


def test_warmup_needs_a_scheduler_that_warms_up():
    with pytest.raises(InvalidRequest, match="lr_warmup_steps"):
        training_config(lr_warmup_steps=10)


def test_bad_input_is_refused_before_any_work(tiny_model, registry, class_cache):
    with pytest.raises(InvalidRequest, match=r"images\[1\]"):
        training.train_version(
            request("bad1"), [IMAGES[0], b"not a png"], base_model=str(tiny_model), registry=registry,
            config=training_config(**TINY), instance_prefix=PREFIX, instance_postfix="",
            class_cache_dir=class_cache,
        )
    with pytest.raises(InvalidRequest, match="resolution"):
        train(request("bad2"), tiny_model, registry, class_cache, config=training_config(resolution=512))
    assert not (registry.root / "subjects" / "rex" / "staging").exists()


# The loop


def test_loss_on_a_fixed_batch_goes_down(tiny_model):
    config = training_config(learning_rate=1e-2, max_steps=40, batch_size=4, lora_rank=4,
                             with_prior_preservation=False)
    precision = choose_precision(config)
    models = load_models(str(tiny_model), precision)
    groups = add_lora(models, config, precision)
    pictures = [Image.open(io.BytesIO(make_png(i))) for i in range(4)]
    data = build_train_data(models.tokenizer, pictures, [], resolution=64, instance_prompt="a qwerty dog",
                            class_prompt="a dog")
    cache_latents(data, models.vae, device=precision.device, dtype=precision.weight_dtype)
    cache_embeddings(data, models.text_encoder, device=precision.device)
    trainer = build_trainer(models, data, groups, config, precision, prediction_type="epsilon")
    fixed = batch_counters(config, 0, 0)
    before = evaluate_loss(trainer, fixed)
    for _ in range(config.max_steps):
        train_step(trainer)
    after = evaluate_loss(trainer, fixed)
    assert after < 0.95 * before, (before, after)


# End to end


@pytest.fixture(scope="module")
def trained(tiny_model, class_cache, tmp_path_factory):
    """One full training (rank 4, alpha 8: the loader must apply the recorded scale)."""
    registry = ModelRegistry(tmp_path_factory.mktemp("registry"))
    config = training_config(**TINY | dict(learning_rate=1e-3, lora_rank=4, lora_alpha=8))
    seen: list[TrainProgress] = []
    result = train(request("job-main"), tiny_model, registry, class_cache, config=config, on_progress=seen.append)
    return registry, result, config, seen


def test_training_publishes_a_live_version_with_its_metadata(trained):
    registry, result, config, seen = trained
    assert result.version.version == 1 and registry.active("rex") == result.version
    assert (result.version.steps, result.version.trained_by) == (6, "tester")
    directory = registry.version_dir("rex", 1)
    meta = VersionMetadata.model_validate_json((directory / "metadata.json").read_text())
    assert meta.hyperparameters["lora_rank"] == 4 and meta.hyperparameters["resolution"] == 64
    assert meta.image_sha256 and len(meta.image_sha256) == len(IMAGES)
    assert meta.final_loss is not None and meta.final_loss > 0
    assert not (directory / "checkpoints").exists()
    assert not (registry.root / "subjects" / "rex" / "staging" / "job-main").exists()
    states = [p.state for p in seen]
    assert states[-1] == "done" and states.index("training") < states.index("saving")
    steps = [p.step for p in seen if p.loss is not None]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_saved_lora_reproduces_the_validation_images(trained, tiny_model):
    registry, result, config, _ = trained
    prompts = config.validation_prompts_for("qwerty dog")
    assert len(result.validation_images) == len(prompts)
    pipe = load_pipeline(str(tiny_model))
    base = [render(pipe, prompt, config.seed + i, config) for i, prompt in enumerate(prompts)]
    pipe.load_lora_weights(registry.version_dir("rex", 1), adapter_name="rex_v1")
    tuned = [render(pipe, prompt, config.seed + i, config) for i, prompt in enumerate(prompts)]
    for png, with_lora, without in zip(result.validation_images, tuned, base, strict=True):
        assert np.array_equal(decode(png), with_lora)
        assert not np.array_equal(with_lora, without)


def test_same_job_id_twice_gives_one_version(trained, tiny_model, class_cache, monkeypatch):
    registry, first, _, _ = trained
    monkeypatch.setattr(training, "load_models", lambda *a, **k: pytest.fail("trained again"))
    again = train(request("job-main"), tiny_model, registry, class_cache)
    assert again.version == first.version and again.validation_images == first.validation_images
    assert [v.version for v in registry.versions("rex")] == [1]


def test_class_images_are_cached_per_class_phrase(trained, tiny_model, class_cache, tmp_path, monkeypatch):
    calls: list[list[str]] = []
    real = training.render_images

    def spy(pipe, prompts, *args, **kwargs):
        calls.append(prompts)
        return real(pipe, prompts, *args, **kwargs)

    monkeypatch.setattr(training, "render_images", spy)
    files = sorted(class_cache.rglob("class-*.png"))
    stamps = [path.stat().st_mtime_ns for path in files]
    registry = ModelRegistry(tmp_path / "registry")
    train(request("job-cached", subject="fido"), tiny_model, registry, class_cache)
    assert len(files) == TINY["num_class_images"]
    assert not [p for p in calls if p[0] == f"{PREFIX} dog"]  # only validation prompts were rendered
    assert [path.stat().st_mtime_ns for path in files] == stamps
    files[1].unlink()
    job, _ = training.prepare_job(
        request("job-refill"), IMAGES, base_model=str(tiny_model), registry=registry,
        config=training_config(**TINY), instance_prefix=PREFIX, instance_postfix="", class_cache_dir=class_cache,
    )
    calls.clear()
    assert len(training.class_images(job, training.ProgressReporter("job-refill", None))) == 4
    assert calls == [[f"{PREFIX} dog"]]  # just the missing one


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(tiny_model, class_cache, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    with pytest.raises(TrainingFailed) as failure:
        train(request("job-a", subject="a"), tiny_model, registry, class_cache, on_progress=stop_at(5))
    assert isinstance(failure.value.__cause__, Interrupt)
    checkpoints = registry.root / "subjects" / "a" / "staging" / "job-a" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-2", "step-4"]
    assert registry.active("a") is None
    seen: list[TrainProgress] = []
    resumed = train(request("job-a", subject="a"), tiny_model, registry, class_cache, on_progress=seen.append)
    assert any(p.message == "resumed from step 4" for p in seen)
    assert [p.step for p in seen if p.loss is not None] == [5, 6]
    straight = train(request("job-b", subject="b"), tiny_model, registry, class_cache)
    resumed_weights = load_file(registry.version_dir("a", resumed.version.version) / WEIGHTS_NAME)
    straight_weights = load_file(registry.version_dir("b", straight.version.version) / WEIGHTS_NAME)
    assert resumed_weights.keys() == straight_weights.keys()
    for name, tensor in straight_weights.items():
        assert torch.equal(resumed_weights[name], tensor), name
    assert resumed.version.final_loss == straight.version.final_loss


def test_failure_leaves_the_live_version_unchanged(tiny_model, class_cache, registry):
    staging = registry.staging_dir("rex", "old-job")
    (staging / WEIGHTS_NAME).write_bytes(b"old weights")
    live = registry.publish("rex", "old-job", VersionMetadata(
        job_id="old-job", subject="rex", instance_phrase="qwerty dog", class_phrase="dog", base_model="x",
    ))
    seen: list[TrainProgress] = []
    with pytest.raises(TrainingFailed, match="Interrupt"):
        train(request("new-job"), tiny_model, registry, class_cache, on_progress=stop_at(3, seen))
    assert registry.active("rex") == live
    assert [v.version for v in registry.versions("rex")] == [1]
    assert seen[-1].state == "failed"


@pytest.mark.slow
def test_text_encoder_lora_is_trained_and_loadable(tiny_model, class_cache, registry):
    config = training_config(**TINY | dict(train_text_encoder=True, max_steps=2, learning_rate=1e-3))
    result = train(request("job-te"), tiny_model, registry, class_cache, config=config)
    weights = load_file(registry.version_dir("rex", result.version.version) / WEIGHTS_NAME)
    assert any(name.startswith("text_encoder.") for name in weights)
    assert any(name.startswith("unet.") for name in weights)
    pipe = load_pipeline(str(tiny_model))
    pipe.load_lora_weights(registry.version_dir("rex", 1), adapter_name="te")
    image = render(pipe, config.validation_prompts_for("qwerty dog")[0], config.seed, config)
    assert np.array_equal(decode(result.validation_images[0]), image)
