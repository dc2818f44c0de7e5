"""A version's LoRA as a file to hand out: as stored (diffusers), or in the kohya layout that AUTOMATIC1111
and ComfyUI load.

The conversion is diffusers' own (`convert_unet_state_dict_to_peft` / `convert_state_dict_to_peft`, then
`convert_state_dict_to_kohya`). Those helpers write each layer's alpha as its rank (scale 1); the alpha the
adapter was trained with is in the stored file's metadata, and is written instead, so a kohya loader applies
the same alpha / rank scale that serving does.
"""

from __future__ import annotations

import json
import struct

import safetensors.torch
import torch
from diffusers.utils.state_dict_utils import (
    convert_state_dict_to_kohya,
    convert_state_dict_to_peft,
    convert_unet_state_dict_to_peft,
)

from gpu_service.errors import InvalidRequest, RemoteError
from gpu_service.registry import DamagedWeights, ModelRegistry

FORMATS = ("diffusers", "kohya")
ADAPTER_METADATA = "lora_adapter_metadata"  # where diffusers' save_lora_weights puts the adapters' configs
# The component prefix of a stored key, and the one convert_state_dict_to_kohya gives it.
KOHYA_PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te1_"}


def export_lora(registry: ModelRegistry, subject: str, version: int, fmt: str = "diffusers") -> bytes:
    """The version's weights (checked against their checksum) in `fmt`: "diffusers" or "kohya"."""
    if fmt not in FORMATS:
        raise InvalidRequest(f"The export format must be {' or '.join(FORMATS)}, not {fmt[:20]!r}.")
    try:
        data = registry.read_weights(subject, version)
    except DamagedWeights as error:
        raise RemoteError(f"Version {version} is damaged ({error}) and cannot be exported.") from None
    return data if fmt == "diffusers" else to_kohya(data)


def to_kohya(data: bytes) -> bytes:
    """A diffusers-format LoRA file (bytes) converted to the kohya layout (bytes)."""
    stored = safetensors.torch.load(data)
    unet = {key: value for key, value in stored.items() if key.startswith("unet.")}
    text = {key: value for key, value in stored.items() if key.startswith("text_encoder.")}
    peft = convert_unet_state_dict_to_peft(unet)
    if text:
        peft |= convert_state_dict_to_peft(text)
    kohya = convert_state_dict_to_kohya(peft)
    for component, alpha in trained_alphas(data).items():
        prefix = KOHYA_PREFIXES[component]
        for key in kohya:
            if key.startswith(prefix) and key.endswith(".alpha"):
                kohya[key] = torch.tensor(alpha)
    return safetensors.torch.save(kohya, metadata={"format": "pt"})


def trained_alphas(data: bytes) -> dict[str, float]:
    """Each component's `lora_alpha` from the file's adapter metadata; empty when the file has none."""
    header = _safetensors_header(data).get("__metadata__") or {}
    configs = json.loads(header.get(ADAPTER_METADATA, "{}"))
    alphas = {}
    for component in KOHYA_PREFIXES:
        alpha = configs.get(f"{component}.lora_alpha")
        if alpha is not None:
            alphas[component] = float(alpha)
    return alphas


def _safetensors_header(data: bytes) -> dict:
    """The JSON header of a safetensors file: an 8-byte little-endian length, then the JSON."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])
