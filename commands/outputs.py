"""Writing a generation to disk: a PNG per image and a JSON sidecar with what made it."""

from __future__ import annotations

import json
from pathlib import Path

from commands.generate import Generation


def sidecar(generation: Generation, index: int) -> dict:
    result = generation.result
    image = result.images[index]
    return {
        "row_id": generation.row_id(index),
        "prompt": result.prompt,
        "negative_prompt": result.negative_prompt,
        "seed": image.seed,
        "withheld": image.withheld,
        "steps": result.steps,
        "guidance": result.guidance,
        "width": result.width,
        "height": result.height,
        "subject": result.subject,
        "version": result.version,
        "model": result.model,
        "base_fallback": result.base_fallback,
    }


def save_generation(generation: Generation, directory: Path) -> list[Path]:
    """Returns the PNG paths written (withheld images get a sidecar and no PNG)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for image in generation.result.images:
        stem = directory / f"{generation.row_id(image.index)}"
        stem.with_suffix(".json").write_text(json.dumps(sidecar(generation, image.index), indent=2))
        if image.png is not None:
            stem.with_suffix(".png").write_bytes(image.png)
            written.append(stem.with_suffix(".png"))
    return written
