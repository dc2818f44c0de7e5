"""The intake's policy and results: small frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class IntakePolicy:
    """Limits for one intake. Defaults suit strangers' links pasted in Discord."""

    allow_private: bool = False  # settings.ALLOW_PRIVATE_URLS; lifts the private-address and port rules
    max_bytes: int = 20 * MIB  # per image or link list, enforced while streaming (not from Content-Length)
    timeout_s: float = 60.0  # total time limit for the whole intake
    min_images: int = 3
    max_images: int = 20
    max_redirects: int = 5
    resolution: int = 512  # training resolution: centre-crop + resize to resolution x resolution


@dataclass(frozen=True)
class IntakeImage:
    name: str  # link (without credentials or query) or file name, for messages
    png: bytes  # the prepared image (RGB, cropped, resized) as PNG bytes
    sha256: str  # hash of the original bytes as received

    def __repr__(self) -> str:
        return f"IntakeImage(name={self.name!r}, png=<{len(self.png)} bytes>, sha256={self.sha256[:12]!r})"


@dataclass(frozen=True)
class Rejection:
    name: str
    reason: str  # short and human, e.g. "not an image (text/html page)"


@dataclass(frozen=True)
class IntakeResult:
    images: tuple[IntakeImage, ...]
    rejected: tuple[Rejection, ...]


def describe_size(n_bytes: int) -> str:
    """A byte count as a user reads it: "20 MiB", "100 KiB", "512 bytes"."""
    if n_bytes >= MIB:
        return f"{n_bytes / MIB:.3g} MiB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.3g} KiB"
    return f"{n_bytes} bytes"
