"""Picture sizes from a named aspect (`GenerateRequest.aspect`), without torch: the engine uses them with
the model's native size, and stand-ins for the engine use them too."""

from __future__ import annotations

# Width:height of each aspect a member can pick (gpu_service.schemas.Aspect).
ASPECT_RATIOS = {"square": (1, 1), "portrait": (2, 3), "landscape": (3, 2), "wide": (16, 9)}


def aspect_size(native: int, aspect: str, step: int = 8) -> tuple[int, int]:
    """Width and height in the aspect's ratio with about native x native pixels, each a multiple of `step`:
    at 512 (step 64) portrait is 448x640, landscape 640x448, wide 704x384; never far above native²."""
    across, down = ASPECT_RATIOS[aspect]
    scale = native / (across * down) ** 0.5
    return max(step, round(across * scale / step) * step), max(step, round(down * scale / step) * step)
