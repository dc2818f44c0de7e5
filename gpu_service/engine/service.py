"""The inference service: a warm generator behind a micro-batcher, kept in step with the registry.

The same object serves the local client (in the bot's process) and the Modal class (in a container).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from gpu_service.engine.adapters import AdapterSwitcher
from gpu_service.engine.batcher import MicroBatcher
from gpu_service.engine.generator import BatchItem, Generator, ProgressSink
from gpu_service.errors import GpuServiceError
from gpu_service.registry import ModelRegistry
from gpu_service.schemas import GenerateRequest, GenerateResult, GenerationProgress
from gpu_service.settings import Settings

log = logging.getLogger(__name__)


class InferenceService:
    def __init__(
        self, *, base_model: str, registry: ModelRegistry, default_subject: str, default_phrase: str,
        hf_token: str | None = None, reload_storage: Callable[[], None] | None = None, max_batch: int = 4,
        window_s: float = 0.01,
    ) -> None:
        self.base_model = base_model
        self.registry = registry
        self.default_subject = default_subject
        self.default_phrase = default_phrase
        self.hf_token = hf_token
        self.reload_storage = reload_storage
        self._generator: Generator | None = None
        self._load_lock = threading.Lock()
        self._batcher: MicroBatcher[BatchItem, GenerateResult] = MicroBatcher(
            self._run_batch, max_batch=max_batch, window_s=window_s
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, reload_storage=None, **kwargs) -> InferenceService:
        token = settings.HUGGINGFACE_TOKEN
        return cls(
            base_model=settings.BASE_MODEL, registry=ModelRegistry(settings.registry_dir),
            default_subject=settings.DEFAULT_SUBJECT, default_phrase=settings.INSTANCE_PHRASE,
            hf_token=token.get_secret_value() if token else None, reload_storage=reload_storage, **kwargs,
        )

    @property
    def loaded(self) -> bool:
        return self._generator is not None

    @property
    def pipeline_calls(self) -> int:
        return self._generator.pipeline_calls if self._generator else 0

    def load(self) -> Generator:
        """Load the base pipeline once and warm the active LoRAs of every subject."""
        with self._load_lock:
            if self._generator is None:
                generator = Generator.load(
                    self.base_model, token=self.hf_token,
                    adapters_factory=lambda pipe: AdapterSwitcher(pipe, self.registry),
                    default_subject=self.default_subject, default_phrase=self.default_phrase,
                )
                self._warm_loras(generator)
                self._generator = generator
        return self._generator

    def _warm_loras(self, generator: Generator) -> None:
        """Load the live LoRAs ahead of the first request; one unreadable version must not stop serving."""
        for subject in self.registry.subjects()[: generator.adapters.max_loaded]:
            try:
                adapters = generator.adapters
                adapters.activate(adapters.usable(self.registry.active(subject)))
            except Exception:
                log.exception("could not warm the live LoRA of %s; it loads on first use", subject)
        generator.adapters.activate(None)

    def submit(
        self, request: GenerateRequest, on_progress: ProgressSink | None = None, previews: bool = False,
        cancel: threading.Event | None = None,
    ):
        """Queue a request; returns a concurrent Future of its GenerateResult. Setting `cancel` stops its
        rendering at the next step (cancelling the Future is enough while it still waits)."""
        return self._batcher.submit(BatchItem(request, on_progress, previews, cancel))

    def generate(self, request: GenerateRequest, on_progress: ProgressSink | None = None) -> GenerateResult:
        """Thread-safe; concurrent callers share batched pipeline calls."""
        return self.submit(request, on_progress).result()

    def generate_stream(self, request: GenerateRequest) -> Iterator[GenerationProgress | GenerateResult]:
        """Step progress with cheap previews as it happens, then the result last."""
        updates: queue.Queue = queue.Queue()
        future = self.submit(request, updates.put, previews=True)
        future.add_done_callback(lambda _: updates.put(None))
        while (update := updates.get()) is not None:
            yield update
        yield future.result()

    def bad_versions(self) -> list[str]:
        """LoRA versions this service set aside as damaged, e.g. "rex v3: checksum mismatch" (for /status)."""
        return self._generator.adapters.bad_versions() if self._generator else []

    def queued(self) -> int:
        return self._batcher.queued()

    def close(self) -> None:
        self._batcher.close()

    def _run_batch(self, items: list[BatchItem]) -> list[GenerateResult | GpuServiceError]:
        # Runs on the batcher's thread, between pipeline calls: the only safe moment to reload storage.
        generator = self.load()
        self._catch_up(items)
        return generator.generate_batch(items)

    def _catch_up(self, items: list[BatchItem]) -> None:
        """A request naming a version this container has not seen means storage moved on: reload once."""
        if self.reload_storage is None:
            return
        for item in items:
            wanted = item.request.subject_version
            if wanted is not None and not self._has_version(item.request.subject, wanted):
                log.info("request wants %s v%s: reloading storage", item.request.subject, wanted)
                self.reload_storage()
                return

    def _has_version(self, subject: str, version: int) -> bool:
        return any(known.version == version for known in self.registry.versions(subject))
