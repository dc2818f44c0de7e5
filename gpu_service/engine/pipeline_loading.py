"""Loading the base pipeline: one `from_pretrained` call for a hub id and a local directory alike."""

from __future__ import annotations

import logging
import threading

import torch
from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import utils as hub_utils
from transformers.utils import logging as transformers_logging

log = logging.getLogger(__name__)

# Held around every `from_pretrained` and `load_lora_weights` of the engine, inference and training alike:
# the libraries' loaders switch process-wide state to build models on the "meta" device, so a load on one
# thread while another loads can leave weights on "meta". Re-entrant: a load may run inside another.
MODEL_LOADING = threading.RLock()


def pick_device() -> tuple[str, torch.dtype]:
    """fp16 on CUDA (half the memory, tensor cores), fp32 on CPU (fp16 kernels there are slow or missing)."""
    if torch.cuda.is_available():
        return "cuda", torch.float16
    return "cpu", torch.float32


def load_pipeline(base_model: str, *, token: str | None = None, device: str | None = None) -> DiffusionPipeline:
    """Load the base model warm and ready, with a fast multistep scheduler.

    The safety checker is kept wherever the model ships one: flagged images are reported as withheld.
    """
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    # Transformers switches the hub's bars off with its own; the first load's download (gigabytes, minutes)
    # should show its progress in the terminal. HF_HUB_DISABLE_PROGRESS_BARS=1 still turns them off.
    hub_utils.enable_progress_bars()
    # A UNet-only LoRA makes diffusers warn, on every load, that the text encoder got no LoRA keys.
    diffusers_logging.set_verbosity_error()
    chosen_device, dtype = pick_device() if device is None else (device, torch.float32)
    with MODEL_LOADING:
        pipe = DiffusionPipeline.from_pretrained(base_model, dtype=dtype, token=token)
    # DPM-Solver++ gives SD1.5 quality in ~25 steps where DDIM/PNDM want 50.
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, algorithm_type="dpmsolver++"
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.to(chosen_device)
    _own_memory(pipe)
    log.info("loaded %s on %s (%s)", base_model, chosen_device, dtype)
    return pipe


def _own_memory(pipe: DiffusionPipeline) -> None:
    """Copy weights still backed by their memory-mapped files into memory of the process's own.

    On CPU, loading leaves tensors reading straight from the model files: one truncated or replaced
    under a running process would kill it with SIGBUS. On a GPU the move to the device already copied.
    """
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in (*component.parameters(), *component.buffers()):
            if tensor.device.type == "cpu":
                tensor.data = tensor.data.clone()


def native_size(pipe: DiffusionPipeline) -> int:
    """The side the model was trained at: 512 for SD1.5, 64 for the tiny test model."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor
