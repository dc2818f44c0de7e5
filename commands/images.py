"""Generated PNGs kept by row id, so Share and Variations work on old messages and after a restart.

    DATA_DIR/images/<row_id>.png     one file per image that was not withheld

Written when a generation finishes (before the reply), read when a member clicks Share or Variations.
Withheld images are never written: there is nothing to share or vary.

Retention: `prune(max_age_s)` removes files older than IMAGE_RETENTION_DAYS (the bot runs it at start).
A click on an older message still works in Discord: the bot then downloads the image from the message's
own attachment (`ButtonDesk.fetch_image` in bot/buttons.py), so the store is a fast path, not the only
copy. Deleting a generation (its Delete button) removes its files here at once.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from commands.generate import Generation

_ROW_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class ImageStore:
    """Synchronous and small: callers off the event loop use asyncio.to_thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, row_id: str) -> Path:
        if not _ROW_ID.fullmatch(row_id):
            raise ValueError(f"not a row id: {row_id!r}")
        return self.root / f"{row_id}.png"

    def save(self, generation: Generation) -> list[str]:
        """Write every image that has pixels; returns their row ids."""
        self.root.mkdir(parents=True, exist_ok=True)
        saved = []
        for image in generation.result.images:
            if image.png is None:
                continue
            row_id = generation.row_id(image.index)
            target = self.path(row_id)
            partial = target.with_suffix(".part")
            partial.write_bytes(image.png)
            os.replace(partial, target)  # a reader never sees half a file
            saved.append(row_id)
        return saved

    def load(self, row_id: str) -> bytes | None:
        try:
            return self.path(row_id).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def delete(self, row_ids: Iterable[str]) -> int:
        removed = 0
        for row_id in row_ids:
            try:
                self.path(row_id).unlink()
                removed += 1
            except (FileNotFoundError, ValueError):
                pass
        return removed

    def prune(self, max_age_s: float, now: float | None = None) -> int:
        """Remove images older than `max_age_s`; returns how many went."""
        if not self.root.is_dir():
            return 0
        cutoff = (now if now is not None else time.time()) - max_age_s
        removed = 0
        for path in self.root.glob("*.png"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
