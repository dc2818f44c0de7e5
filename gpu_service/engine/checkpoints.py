"""Training checkpoints in a job's staging directory: `checkpoints/step-<n>/`, newest few kept.

A checkpoint is written into a hidden `.tmp-step-<n>` directory and appears by one rename, so a kill
mid-write leaves the previous checkpoint as the newest usable one. Each holds:

    lora.safetensors     the trainable (LoRA) weights by parameter name
    training_state.pt    optimizer, lr scheduler, grad scaler and RNG states (loaded with weights_only)
    state.json           step, recent losses and the fingerprint of the training it belongs to
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
_NAME = re.compile(r"step-(\d+)")
LORA_FILE = "lora.safetensors"
STATE_FILE = "training_state.pt"
INFO_FILE = "state.json"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        """(LoRA weights, training state, info) as saved."""
        lora = load_file(self.path / LORA_FILE)
        state = torch.load(self.path / STATE_FILE, map_location="cpu", weights_only=True)
        info = json.loads((self.path / INFO_FILE).read_text())
        return lora, state, info

    def fingerprint(self) -> str | None:
        try:
            return json.loads((self.path / INFO_FILE).read_text()).get("fingerprint")
        except (OSError, ValueError):
            return None


def checkpoints(staging: Path) -> list[Checkpoint]:
    """Complete checkpoints, newest first."""
    base = Path(staging) / CHECKPOINTS_DIR
    found = []
    for path in base.iterdir() if base.is_dir() else []:
        match = _NAME.fullmatch(path.name)
        if match and (path / INFO_FILE).is_file():
            found.append(Checkpoint(path, int(match.group(1))))
    return sorted(found, key=lambda checkpoint: checkpoint.step, reverse=True)


def save_checkpoint(
    staging: Path, step: int, *, lora: dict[str, torch.Tensor], state: dict[str, Any], info: dict[str, Any],
    keep: int,
) -> Checkpoint:
    """Write step `step` atomically, then remove all but the newest `keep`."""
    base = Path(staging) / CHECKPOINTS_DIR
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-step-{step}"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a run killed while writing this step
    tmp.mkdir()
    save_file({name: tensor.contiguous() for name, tensor in lora.items()}, tmp / LORA_FILE)
    torch.save(state, tmp / STATE_FILE)
    (tmp / INFO_FILE).write_text(json.dumps(info | {"step": step}))
    _fsync_dir(tmp)
    final = base / f"step-{step}"
    if final.exists():
        _remove(final)
    os.rename(tmp, final)
    for old in checkpoints(staging)[keep:]:
        _remove(old.path)
    return Checkpoint(final, step)


def discard_checkpoints(staging: Path) -> None:
    base = Path(staging) / CHECKPOINTS_DIR
    if base.exists():
        shutil.rmtree(base)


def _remove(path: Path) -> None:
    """Hide first, then delete: a reader never sees a half-deleted checkpoint under its real name."""
    hidden = path.with_name(f".old-{path.name}")
    if hidden.exists():
        shutil.rmtree(hidden)
    os.rename(path, hidden)
    shutil.rmtree(hidden)


def _fsync_dir(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as file:
            os.fsync(file.fileno())
