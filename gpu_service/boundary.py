"""Where work leaves the GPU side: every error becomes one of our own small, picklable types."""

from __future__ import annotations

import contextlib
import logging

from pydantic import ValidationError

from gpu_service.errors import GpuServiceError, InvalidRequest, RemoteError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def boundary(action: str):
    """Errors leave a container as our own small types, so the bot unpickles them without torch installed."""
    try:
        yield
    except GpuServiceError:
        raise
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "request"
        raise InvalidRequest(f"The request is not valid: {field}: {first['msg']}") from None
    except Exception as error:
        log.exception("%s failed", action)
        raise RemoteError(f"The GPU service failed while {action} ({error.__class__.__name__}).") from None
