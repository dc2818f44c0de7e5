"""LoRA export: the stored file as is, or converted for kohya loaders; the kohya file renders the same images."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, get_peft_model_state_dict

from gpu_service.engine.export import export_lora
from gpu_service.errors import InvalidRequest, RemoteError
from gpu_service.registry import WEIGHTS_NAME, ModelRegistry, VersionMetadata

RANK, ALPHA = 4, 8  # alpha != rank: a converter that drops the trained alpha renders other images


def publish_lora(registry: ModelRegistry, model_dir, subject: str = "rex") -> None:
    """A LoRA with random non-zero weights, saved with its adapter config as the trainer saves it."""
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    StableDiffusionPipeline.save_lora_weights(
        registry.staging_dir(subject, "job-1"),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
    )
    registry.publish(subject, "job-1", VersionMetadata(
        job_id="job-1", subject=subject, instance_phrase="rex dog", class_phrase="dog", base_model=str(model_dir)))


def render(model_dir, lora_dir=None, weight_name=None) -> np.ndarray:
    pipe = DiffusionPipeline.from_pretrained(model_dir)
    if lora_dir is not None:
        pipe.load_lora_weights(lora_dir, weight_name=weight_name)
    generator = torch.Generator().manual_seed(3)
    out = pipe("a photo of a rex dog", num_inference_steps=3, generator=generator, output_type="np")
    return out.images[0]


@pytest.fixture
def registry(tmp_path, tiny_model_dir) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    publish_lora(registry, tiny_model_dir)
    return registry


def test_diffusers_export_is_the_stored_file(registry):
    stored = (registry.version_dir("rex", 1) / WEIGHTS_NAME).read_bytes()
    assert export_lora(registry, "rex", 1) == stored
    assert export_lora(registry, "rex", 1, "diffusers") == stored


def test_kohya_export_renders_the_same_images_as_the_stored_lora(registry, tiny_model_dir, tmp_path):
    kohya = export_lora(registry, "rex", 1, "kohya")
    keys = safetensors.torch.load(kohya)
    assert keys and all(key.startswith("lora_unet_") for key in keys)
    alphas = {float(value) for key, value in keys.items() if key.endswith(".alpha")}
    assert alphas == {float(ALPHA)}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "rex-v1.safetensors").write_bytes(kohya)

    base = render(tiny_model_dir)
    stored = render(tiny_model_dir, registry.version_dir("rex", 1))
    exported = render(tiny_model_dir, tmp_path / "out", "rex-v1.safetensors")
    assert np.abs(stored - base).max() > 1e-3  # the LoRA changes the picture
    np.testing.assert_allclose(exported, stored, atol=1e-6)


def test_unknown_format_is_refused_with_a_sentence(registry):
    with pytest.raises(InvalidRequest, match="diffusers or kohya"):
        export_lora(registry, "rex", 1, "ckpt")


def test_damaged_weights_are_not_exported(registry):
    path = registry.version_dir("rex", 1) / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(RemoteError, match="damaged .truncated"):
        export_lora(registry, "rex", 1, "kohya")
