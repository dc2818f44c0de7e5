"""What a generation is, as every front end sees it: the options a member typed and the finished result.

The use case that turns one into the other is commands.qwerty.QwertyService."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol

from commands.context import RequestContext
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
    aspect: str | None = None
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


@dataclass(frozen=True)
class Refusal:
    """A prompt refused before any GPU time (a banned word, a bad option, a limit): moderators see it too."""

    refusal_id: str
    options: GenerateOptions
    context: RequestContext
    reason: str  # the error's type and its sentence for people


class GenerationLog(Protocol):
    def log_generation(self, generation: Generation) -> None:
        """Record it without blocking the caller; must never raise."""

    def log_refusal(self, refusal: Refusal) -> None:
        """Record a refused prompt (no image) without blocking the caller; must never raise."""


def new_id() -> str:
    return uuid.uuid4().hex[:12]
