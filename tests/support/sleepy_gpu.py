"""A GpuClient that sleeps instead of using a GPU: for tests and benchmarks about the bot, not the model.

It keeps the contract (validated requests in, well-formed results out, progress on the loop's thread),
returns small valid PNGs, trains by publishing a new version in memory, and can be held (`gate`) or
made to fail (`fail_with`) so tests can look at the bot while work is in flight.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

from PIL import Image

from gpu_service.client import ProgressCallback, TrainProgressCallback
from gpu_service.errors import SubjectNotFound
from gpu_service.sizes import aspect_size
from gpu_service.schemas import (
    GeneratedImage,
    GenerateRequest,
    GenerateResult,
    GenerationProgress,
    ModelVersion,
    ServiceStatus,
    TrainProgress,
    TrainRequest,
    TrainResult,
)


def tiny_png(seed: int, size: int = 16, height: int | None = None) -> bytes:
    color = (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)
    buffer = io.BytesIO()
    Image.new("RGB", (size, height or size), color).save(buffer, format="PNG")
    return buffer.getvalue()


class SleepyGpu:
    def __init__(
        self, *, delay_s: float = 0.02, train_steps: int = 4, train_delay_s: float = 0.02,
        phrase: str = "qwerty dog", image_size: int = 16,
    ) -> None:
        self.delay_s = delay_s
        self.train_steps = train_steps
        self.train_delay_s = train_delay_s
        self.phrase = phrase
        self.image_size = image_size
        self.gate: asyncio.Event | None = None  # when set to an unset Event, work waits for it
        self.fail_with: BaseException | None = None
        self.preview_every = 0  # when > 0, progress carries a preview PNG every this many steps
        self.generated: list[GenerateRequest] = []
        self.trained: list[TrainRequest] = []
        self.resumed: list[tuple[TrainRequest, str | None]] = []
        self.cancelled: list[tuple[str, str | None]] = []  # (job id, call id) of each cancel_training
        self.running = 0
        self.max_running = 0
        self.versions: list[ModelVersion] = []
        self.lora_bytes = 1024  # the size of an exported LoRA file
        self.exported: list[tuple[str, int, str]] = []
        self.closed = False

    async def generate(self, request: GenerateRequest, on_progress: ProgressCallback | None = None) -> GenerateResult:
        self.generated.append(request)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self._hold()
            for step in range(1, request.steps + 1):
                if on_progress is not None:
                    preview = tiny_png(step, 8) if self.preview_every and step % self.preview_every == 0 else None
                    on_progress(GenerationProgress(step=step, total_steps=request.steps, preview_png=preview))
                await asyncio.sleep(self.delay_s / request.steps)
        finally:
            self.running -= 1
        return self._result(request)

    async def train(self, request: TrainRequest, on_progress: TrainProgressCallback | None = None) -> TrainResult:
        self.trained.append(request)
        return await self._train(request, on_progress)

    async def resume_training(
        self, request: TrainRequest, call_id: str | None, on_progress: TrainProgressCallback | None = None
    ) -> TrainResult:
        self.resumed.append((request, call_id))
        return await self._train(request, on_progress)

    async def cancel_training(self, job_id: str, call_id: str | None) -> TrainResult | None:
        """A sleeping training stops when its caller stops awaiting it: it never publishes afterwards."""
        self.cancelled.append((job_id, call_id))
        return None

    async def list_versions(self, subject: str | None = None) -> list[ModelVersion]:
        return [v for v in self.versions if subject is None or v.subject == subject]

    async def activate(self, subject: str, version: int) -> ModelVersion:
        found = [v for v in self.versions if v.subject == subject and v.version == version]
        if not found:
            raise SubjectNotFound(f"no version {version} of {subject}")
        self.versions = [v.model_copy(update={"active": v in found}) if v.subject == subject else v
                         for v in self.versions]
        return found[0].model_copy(update={"active": True})

    async def export_lora(self, subject: str, version: int, fmt: str = "diffusers") -> bytes:
        if not any(v.subject == subject and v.version == version for v in self.versions):
            raise SubjectNotFound(f"no version {version} of {subject}")
        self.exported.append((subject, version, fmt))
        head = f"{fmt} LoRA of {subject} v{version}\n".encode()
        return head + b"\0" * max(0, self.lora_bytes - len(head))

    async def status(self) -> ServiceStatus:
        return ServiceStatus(backend="sleepy", reachable=True, warm=True)

    async def close(self) -> None:
        self.closed = True

    async def _hold(self) -> None:
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), 30)
        if self.fail_with is not None:
            raise self.fail_with

    def _result(self, request: GenerateRequest) -> GenerateResult:
        live = next((v for v in self.versions if v.subject == request.subject and v.active), None)
        phrase = live.instance_phrase if live else self.phrase
        prompt = " ".join(p for p in (request.prompt_prefix, phrase, request.prompt_postfix) if p)
        first = request.seed if request.seed is not None else 1000 + len(self.generated)
        width, height = self.size_of(request)
        images = tuple(
            GeneratedImage(index=i, seed=first + i, png=tiny_png(first + i, width, height))
            for i in range(request.count)
        )
        return GenerateResult(
            prompt=prompt, negative_prompt=request.negative_prompt, images=images, model="sleepy",
            subject=request.subject, version=live.version if live else None, base_fallback=live is None,
            steps=request.steps, guidance=request.guidance, width=width, height=height,
        )

    def size_of(self, request: GenerateRequest) -> tuple[int, int]:
        """As the engine sizes a request, with `image_size` as the model's native side."""
        if request.aspect is not None:
            return aspect_size(self.image_size, request.aspect)
        return request.width or self.image_size, request.height or self.image_size

    async def _train(self, request: TrainRequest, on_progress: TrainProgressCallback | None) -> TrainResult:
        report = on_progress or (lambda progress: None)
        call_id = f"sleepy-{request.job_id}"
        report(TrainProgress(job_id=request.job_id, state="training", call_id=call_id))
        await self._hold()
        for step in range(1, self.train_steps + 1):
            await asyncio.sleep(self.train_delay_s)
            report(TrainProgress(job_id=request.job_id, state="training", step=step,
                                 total_steps=self.train_steps, loss=1.0 / step, call_id=call_id))
        number = 1 + max((v.version for v in self.versions if v.subject == request.subject), default=0)
        version = ModelVersion(
            subject=request.subject, version=number, instance_phrase=request.instance_phrase,
            class_phrase=request.class_phrase, base_model="sleepy", created_at=datetime.now(UTC),
            trained_by=request.requested_by, steps=self.train_steps, final_loss=0.25,
            wandb_url=f"https://wandb.example/runs/{request.job_id}", active=True,
        )
        self.versions = [v.model_copy(update={"active": False}) if v.subject == request.subject else v
                         for v in self.versions] + [version]
        report(TrainProgress(job_id=request.job_id, state="done", step=self.train_steps,
                             total_steps=self.train_steps, call_id=call_id))
        return TrainResult(job_id=request.job_id, version=version, validation_images=(tiny_png(number),))
