"""Switching subjects' LoRAs in the warm pipeline without reloading the base model.

Weights are read whole into memory and checked against the size and SHA-256 published with them before
they reach the pipeline: nothing stays memory-mapped, so a file truncated or replaced under a running
process can never take it down, and a damaged version is set aside in favour of the one before it.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import safetensors.torch
from diffusers import DiffusionPipeline

from gpu_service.engine.pipeline_loading import MODEL_LOADING
from gpu_service.errors import RemoteError, SubjectNotFound
from gpu_service.registry import WEIGHTS_NAME, DamagedWeights, ModelRegistry
from gpu_service.schemas import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Damage:
    reason: str
    file_state: tuple[int, int] | None  # (size, mtime) when it failed: a changed file is checked again


class AdapterSwitcher:
    """Keeps up to `max_loaded` LoRAs resident as named adapters and enables the one a request needs."""

    def __init__(self, pipe: DiffusionPipeline, registry: ModelRegistry | None, *, max_loaded: int = 4) -> None:
        self.pipe = pipe
        self.registry = registry
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._damaged: dict[tuple[str, int], _Damage] = {}

    def activate(self, chosen: ModelVersion | None) -> None:
        """Make the pipeline answer with `chosen`'s LoRA, or with the bare base model for None."""
        if chosen is None:
            if self._loaded:
                self.pipe.disable_lora()
            return
        name = adapter_name(chosen)
        if name not in self._loaded:
            problem = self._try_load(chosen)
            if problem is not None:
                raise RemoteError(f"The model for '{chosen.subject}' v{chosen.version} is damaged ({problem}).")
        self._loaded.move_to_end(name)
        self.pipe.enable_lora()
        self.pipe.set_adapters([name])

    def lookup(self, subject: str, version: int | None) -> ModelVersion | None:
        if self.registry is None:
            return None
        if version is None:
            return self.registry.active(subject)
        for candidate in self.registry.versions(subject):
            if candidate.version == version:
                return candidate
        raise SubjectNotFound(f"Subject '{subject}' has no version {version}.")

    def usable(self, chosen: ModelVersion | None) -> ModelVersion | None:
        """The version that will answer for `chosen`, its LoRA loaded: `chosen` itself, or when its file is
        damaged the newest earlier version of the subject that loads. RemoteError if none does."""
        if chosen is None:
            return None
        for candidate in self._with_earlier(chosen):
            if self._ready(candidate):
                if candidate != chosen:
                    log.warning(
                        "subject %r: v%d is damaged (%s); v%d answers instead", chosen.subject, chosen.version,
                        self._damaged[(chosen.subject, chosen.version)].reason, candidate.version,
                    )
                return candidate
        raise RemoteError(
            f"The model for '{chosen.subject}' is damaged and no earlier version of it loads. "
            "An admin can train it again with /train."
        )

    def bad_versions(self) -> list[str]:
        """Versions set aside as damaged, e.g. "qwerty v3: checksum mismatch", by subject and version."""
        damaged = sorted(self._damaged.items())
        return [f"{subject} v{version}: {damage.reason}" for (subject, version), damage in damaged]

    def _with_earlier(self, chosen: ModelVersion) -> list[ModelVersion]:
        earlier = [v for v in self.registry.versions(chosen.subject) if v.version < chosen.version]
        return [chosen, *sorted(earlier, key=lambda v: v.version, reverse=True)]

    def _ready(self, version: ModelVersion) -> bool:
        if adapter_name(version) in self._loaded:
            return True
        key = (version.subject, version.version)
        damage = self._damaged.get(key)
        if damage is not None and damage.file_state == self._file_state(version):
            return False
        return self._try_load(version) is None

    def _try_load(self, version: ModelVersion) -> str | None:
        """Load `version`'s LoRA; on failure record it as damaged and return why."""
        key = (version.subject, version.version)
        try:
            self._load(version, adapter_name(version))
        except Exception as error:
            damaged = isinstance(error, DamagedWeights)
            reason = str(error) if damaged else f"unreadable ({error.__class__.__name__})"
            log.warning("subject %r: v%d cannot be used: %s", version.subject, version.version, reason)
            self._damaged[key] = _Damage(reason, self._file_state(version))
            return reason
        self._damaged.pop(key, None)
        return None

    def _file_state(self, version: ModelVersion) -> tuple[int, int] | None:
        try:
            stat = (self.registry.version_dir(version.subject, version.version) / WEIGHTS_NAME).stat()
        except (OSError, SubjectNotFound):
            return None
        return stat.st_size, stat.st_mtime_ns

    def _load(self, version: ModelVersion, name: str) -> None:
        state_dict = safetensors.torch.load(self.registry.read_weights(version.subject, version.version))
        with warnings.catch_warnings(), MODEL_LOADING:
            # Several named adapters in one UNet is the design, not the mistake peft warns about.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            self.pipe.load_lora_weights(state_dict, adapter_name=name)
        self._loaded[name] = None
        while len(self._loaded) > self.max_loaded:
            evicted, _ = self._loaded.popitem(last=False)
            self.pipe.delete_adapters(evicted)
            log.info("evicted LoRA %s", evicted)


def adapter_name(version: ModelVersion) -> str:
    """One name per (subject key, version), never shared: `a-b`, `a_b` and `a@1` are all valid keys."""
    escaped = version.subject.replace("_", "__").replace("-", "_h").replace("@", "_a")
    return f"{escaped}_v{version.version}"
