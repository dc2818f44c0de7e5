"""The models a training needs: loading, precision, LoRA adapters, optimizer, and the final LoRA file."""

from __future__ import annotations

import gc
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from transformers import CLIPTextModel, CLIPTokenizer

from gpu_service.engine.train_config import TrainingConfig
from gpu_service.registry import WEIGHTS_NAME

log = logging.getLogger(__name__)

UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
ADAPTER = "default"


@dataclass(frozen=True)
class Precision:
    """Where and how a training runs: frozen weights in `weight_dtype`, trainable LoRA weights in fp32."""

    device: torch.device
    weight_dtype: torch.dtype
    use_grad_scaler: bool  # fp16 only: bf16 has fp32's range

    @property
    def autocast(self):
        if self.device.type == "cuda" and self.weight_dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.weight_dtype)
        return nullcontext()

    @property
    def name(self) -> str:
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.weight_dtype, "fp32")


def choose_precision(config: TrainingConfig, device: str | None = None) -> Precision:
    """Mixed precision and CUDA go together; on CPU everything is fp32 (its fp16 kernels are slow)."""
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    mode = config.mixed_precision
    if chosen.type != "cuda" or mode == "no":
        return Precision(chosen, torch.float32, False)
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return Precision(chosen, dtype, dtype == torch.float16)


def native_side(base_model: str, token: str | None = None) -> int:
    """The side the model was trained at (512 for SD1.5), read from its config files without weights."""
    unet = UNet2DConditionModel.load_config(base_model, subfolder="unet", token=token)
    vae = AutoencoderKL.load_config(base_model, subfolder="vae", token=token)
    return unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)


def model_revision(base_model: str) -> str | None:
    """The hub commit a cached hub model was loaded from; None for a local directory."""
    if Path(base_model).is_dir():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(base_model, "model_index.json")
    except Exception:  # an odd id or cache layout: the revision is only informative
        return None
    return Path(path).parent.name if isinstance(path, str) else None


def load_tokenizer(base_model: str, token: str | None = None) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer", token=token)


@dataclass
class Models:
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel | None
    vae: AutoencoderKL | None
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler
    latent_scale: float = 0.18215  # the VAE's scaling_factor, kept after the VAE itself is freed
    trainable: list[torch.nn.Parameter] = field(default_factory=list)


def load_models(base_model: str, precision: Precision, token: str | None = None) -> Models:
    """Every component frozen, in the weight dtype, on the training device."""
    kwargs = dict(token=token, dtype=precision.weight_dtype)
    models = Models(
        tokenizer=load_tokenizer(base_model, token),
        text_encoder=CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder", **kwargs),
        vae=AutoencoderKL.from_pretrained(base_model, subfolder="vae", **kwargs),
        unet=UNet2DConditionModel.from_pretrained(base_model, subfolder="unet", **kwargs),
        noise_scheduler=DDPMScheduler.from_pretrained(base_model, subfolder="scheduler", token=token),
    )
    for module in (models.text_encoder, models.vae, models.unet):
        module.requires_grad_(False)
        module.to(precision.device)
    models.vae.eval()
    models.latent_scale = float(models.vae.config.scaling_factor)
    models.text_encoder.eval()
    return models


def add_lora(models: Models, config: TrainingConfig, precision: Precision) -> list[dict]:
    """LoRA adapters on the UNet's attention (and the text encoder's, if trained): the optimizer's groups.

    The adapters' initial weights come from the global torch RNG, seeded here so every run starts equal.
    """
    torch.manual_seed(config.seed)
    alpha = config.effective_lora_alpha
    models.unet.add_adapter(LoraConfig(
        r=config.lora_rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=UNET_TARGETS,
    ))
    modules = [models.unet]
    if config.train_text_encoder:
        # peft's own injection: transformers' `add_adapter` insists on a newer peft than serving needs.
        inject_adapter_in_model(LoraConfig(
            r=config.lora_rank, lora_alpha=alpha, init_lora_weights="gaussian",
            target_modules=TEXT_ENCODER_TARGETS,
        ), models.text_encoder, ADAPTER)
        models.text_encoder.train()
        modules.append(models.text_encoder)
    cast_training_params(modules, dtype=torch.float32)
    if precision.device.type == "cuda":
        models.unet.enable_gradient_checkpointing()
        if config.train_text_encoder:
            # Non-reentrant: the reentrant kind gives no gradient to LoRA weights behind frozen embeddings.
            models.text_encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    models.unet.train()
    groups = [{"params": _trainable(models.unet), "lr": config.learning_rate}]
    if config.train_text_encoder:
        groups.append({"params": _trainable(models.text_encoder), "lr": config.text_encoder_lr})
    models.trainable = [param for group in groups for param in group["params"]]
    return groups


def _trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [param for param in module.parameters() if param.requires_grad]


def make_optimizer(groups: list[dict], config: TrainingConfig, precision: Precision) -> torch.optim.Optimizer:
    """bitsandbytes' 8-bit AdamW on CUDA when installed (a quarter of Adam's state memory), else torch's."""
    kwargs = dict(betas=(0.9, 0.999), weight_decay=config.adam_weight_decay, eps=1e-8)
    if precision.device.type == "cuda":
        try:
            import bitsandbytes

            return bitsandbytes.optim.AdamW8bit(groups, **kwargs)
        except ImportError:
            log.info("bitsandbytes is not installed: using torch AdamW")
    return torch.optim.AdamW(groups, **kwargs)


def make_lr_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig):
    return get_scheduler(
        config.lr_scheduler, optimizer=optimizer, num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=config.max_steps,
    )


def trainable_state(models: Models) -> dict[str, torch.Tensor]:
    """The LoRA weights by parameter name, for checkpoints (restored exactly by `load_trainable_state`)."""
    state = {}
    for prefix, module in (("unet.", models.unet), ("text_encoder.", models.text_encoder)):
        if module is not None:
            state |= {prefix + n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}
    return state


@torch.no_grad()
def load_trainable_state(models: Models, state: dict[str, torch.Tensor]) -> None:
    current = {}
    for prefix, module in (("unet.", models.unet), ("text_encoder.", models.text_encoder)):
        if module is not None:
            current |= {prefix + n: p for n, p in module.named_parameters() if p.requires_grad}
    if current.keys() != state.keys():
        raise ValueError("checkpoint holds different LoRA parameters than this training")
    for name, param in current.items():
        param.copy_(state[name])


def save_lora(models: Models, directory: Path, *, train_text_encoder: bool) -> Path:
    """The diffusers-format LoRA file serving loads with `pipe.load_lora_weights(directory)`.

    The adapters' configs go into the file's metadata so a loader applies the same alpha / rank scale.
    """
    unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(models.unet))
    text_layers = None
    text_meta = None
    if train_text_encoder:
        text_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(models.text_encoder))
        text_meta = models.text_encoder.peft_config[ADAPTER].to_dict()
    StableDiffusionPipeline.save_lora_weights(
        directory, unet_lora_layers=unet_layers, text_encoder_lora_layers=text_layers,
        unet_lora_adapter_metadata=models.unet.peft_config[ADAPTER].to_dict(),
        text_encoder_lora_adapter_metadata=text_meta, safe_serialization=True,
    )
    return Path(directory) / WEIGHTS_NAME


def free_memory() -> None:
    """Give freed accelerator memory back, once the caller has dropped its references to models."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
