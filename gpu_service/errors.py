"""Errors that cross the boundary between bot and GPU: small, picklable, no torch inside.

Each carries one user-facing message, so it pickles through Modal and prints as-is in Discord.
"""

from __future__ import annotations


class GpuServiceError(Exception):
    """Base of every error the GPU service reports to its callers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidRequest(GpuServiceError):
    """A request field is out of range; the message names the field."""


class PromptTooLong(InvalidRequest):
    """The prompt needs more tokens than the text encoder reads."""


class SubjectNotFound(InvalidRequest):
    """No such subject or version in the model registry."""


class IntakeError(InvalidRequest):
    """Training images could not be fetched or were rejected; the message lists every reason."""


class GpuBusy(GpuServiceError):
    """The service has no capacity now (a training for this subject runs, a queue is full)."""


class GpuTimeout(GpuServiceError):
    """A call to the GPU service did not finish within its time limit."""


class ModelNotDeployed(GpuServiceError):
    """The remote app or function is not deployed."""


class MissingCredentials(GpuServiceError):
    """The backend needs credentials that are not configured."""


class RemoteError(GpuServiceError):
    """The GPU side failed in a way the caller cannot fix; details are in the service's log."""


class TrainingFailed(GpuServiceError):
    """A training job ended without producing a version."""
