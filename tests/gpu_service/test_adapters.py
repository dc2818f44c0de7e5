"""Several subjects' LoRAs in one warm pipeline: each gives its own output, switching back is exact."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, get_peft_model_state_dict

from gpu_service.engine.adapters import AdapterSwitcher
from gpu_service.engine.generator import Generator
from gpu_service.engine.pipeline_loading import load_pipeline
from gpu_service.errors import RemoteError
from gpu_service.registry import WEIGHTS_NAME, ModelRegistry, VersionMetadata
from gpu_service.schemas import GenerateRequest


def publish_random_lora(registry: ModelRegistry, model_dir, subject: str, phrase: str, seed: int) -> None:
    """A LoRA with random (non-zero) weights, saved and published the way the trainer does."""
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    job_id = f"job-{subject}-{seed}"
    StableDiffusionPipeline.save_lora_weights(
        registry.staging_dir(subject, job_id),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
    )
    registry.publish(subject, job_id, VersionMetadata(
        job_id=job_id, subject=subject, instance_phrase=phrase, class_phrase="dog", base_model=str(model_dir)))


def test_subjects_switch_in_the_warm_pipeline_and_switching_back_is_exact(tiny_model_dir, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    generator = Generator.load(str(tiny_model_dir), adapters_factory=lambda pipe: AdapterSwitcher(pipe, registry),
                               default_subject="qwerty", default_phrase="qwerty dog")
    pipe = generator.pipe

    def render(subject: str) -> bytes:
        request = GenerateRequest(prompt_prefix="a photo of a", subject=subject, seed=9, steps=3)
        return generator.generate(request).images[0].png

    base = render("qwerty")
    publish_random_lora(registry, tiny_model_dir, "qwerty", "qwerty dog", seed=1)
    publish_random_lora(registry, tiny_model_dir, "rex", "qwerty dog", seed=2)  # same prompt, other LoRA
    qwerty, rex = render("qwerty"), render("rex")
    assert len({base, qwerty, rex}) == 3
    assert render("qwerty") == qwerty and render("rex") == rex
    assert generator.pipe is pipe  # never reloaded

    registry.activate("qwerty", 1)
    publish_random_lora(registry, tiny_model_dir, "qwerty", "qwerty dog", seed=3)  # v2 goes live
    assert render("qwerty") not in (qwerty, base)
    registry.activate("qwerty", 1)  # rollback
    assert render("qwerty") == qwerty


def test_activating_a_damaged_version_is_a_sentence_and_lists_it(tiny_model_dir, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    publish_random_lora(registry, tiny_model_dir, "rex", "rex dog", seed=1)
    (registry.version_dir("rex", 1) / WEIGHTS_NAME).write_bytes(b"not weights")
    switcher = AdapterSwitcher(load_pipeline(str(tiny_model_dir)), registry)
    with pytest.raises(RemoteError, match=r"The model for 'rex' v1 is damaged \(truncated \(11 of \d+ bytes\)\)\."):
        switcher.activate(registry.active("rex"))
    assert [line.split(" (")[0] for line in switcher.bad_versions()] == ["rex v1: truncated"]
