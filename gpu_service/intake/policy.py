"""The intake policy a deployment's settings ask for."""

from __future__ import annotations

from gpu_service.intake.models import IntakePolicy
from gpu_service.settings import Settings


def intake_policy(settings: Settings) -> IntakePolicy:
    return IntakePolicy(
        allow_private=settings.ALLOW_PRIVATE_URLS, max_bytes=settings.MAX_IMAGE_BYTES,
        timeout_s=settings.INTAKE_TIMEOUT_S,
    )
