"""Switching subjects' LoRAs in the warm pipeline without reloading the base model."""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict

from diffusers import DiffusionPipeline

from gpu_service.errors import SubjectNotFound
from gpu_service.registry import ModelRegistry
from gpu_service.schemas import ModelVersion

log = logging.getLogger(__name__)


class AdapterSwitcher:
    """Keeps up to `max_loaded` LoRAs resident as named adapters and enables the one a request needs."""

    def __init__(self, pipe: DiffusionPipeline, registry: ModelRegistry | None, *, max_loaded: int = 4) -> None:
        self.pipe = pipe
        self.registry = registry
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, None] = OrderedDict()

    def activate(self, chosen: ModelVersion | None) -> None:
        """Make the pipeline answer with `chosen`'s LoRA, or with the bare base model for None."""
        if chosen is None:
            if self._loaded:
                self.pipe.disable_lora()
            return
        name = adapter_name(chosen)
        if name not in self._loaded:
            self._load(chosen, name)
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

    def _load(self, version: ModelVersion, name: str) -> None:
        directory = self.registry.version_dir(version.subject, version.version)
        with warnings.catch_warnings():
            # Several named adapters in one UNet is the design, not the mistake peft warns about.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            self.pipe.load_lora_weights(directory, adapter_name=name)
        self._loaded[name] = None
        while len(self._loaded) > self.max_loaded:
            evicted, _ = self._loaded.popitem(last=False)
            self.pipe.delete_adapters(evicted)
            log.info("evicted LoRA %s", evicted)


def adapter_name(version: ModelVersion) -> str:
    """One name per (subject, version), never shared: `a-b` and `a_b` are both valid subject names."""
    escaped = version.subject.replace("_", "__").replace("-", "_h")
    return f"{escaped}_v{version.version}"
