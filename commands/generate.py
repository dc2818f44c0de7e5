"""The generation use case, shared by every front end: validate, call the GPU client, log, return."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol

from commands.context import RequestContext
from commands.validation import build
from gpu_service.client import GpuClient, ProgressCallback
from gpu_service.schemas import GenerateRequest, GenerateResult


@dataclass(frozen=True)
class GenerateOptions:
    """What a member typed. None means "the default"; the use case fills defaults in."""

    prompt_prefix: str
    prompt_postfix: str = ""
    subject: str | None = None
    negative_prompt: str = ""
    seed: int | None = None
    count: int = 1
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    init_image: bytes | None = field(default=None, repr=False)
    strength: float | None = None


@dataclass(frozen=True)
class Generation:
    """One finished generation: its id (the W&B row ids derive from it), what was asked, what came back."""

    generation_id: str
    request: GenerateRequest
    result: GenerateResult
    context: RequestContext

    def row_id(self, index: int) -> str:
        return f"{self.generation_id}-{index}"


class GenerationLog(Protocol):
    def log_generation(self, generation: Generation) -> None:
        """Record it without blocking the caller; must never raise."""


class GenerationService:
    def __init__(self, client: GpuClient, log: GenerationLog, *, default_subject: str) -> None:
        self.client = client
        self.log = log
        self.default_subject = default_subject

    def build_request(self, options: GenerateOptions) -> GenerateRequest:
        """Validate before any GPU time is spent; the InvalidRequest names each bad field."""
        given = {name: value for name, value in vars(options).items() if value is not None}
        given.setdefault("subject", self.default_subject)
        return build(GenerateRequest, **given)

    async def generate(
        self,
        options: GenerateOptions | GenerateRequest,
        context: RequestContext,
        on_progress: ProgressCallback | None = None,
        generation_id: str | None = None,
    ) -> Generation:
        request = options if isinstance(options, GenerateRequest) else self.build_request(options)
        result = await self.client.generate(request, on_progress)
        generation = Generation(generation_id or new_id(), request, result, context)
        self.log.log_generation(generation)
        return generation


def new_id() -> str:
    return uuid.uuid4().hex[:12]
