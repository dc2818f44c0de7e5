"""Every prompt and output goes to a W&B Table, off the request path, never breaking generation.

A single background thread owns the run: `log_generation` only enqueues. wandb is imported in that
thread, so a bot that never generates never pays for the import.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from commands.generate import Generation

log = logging.getLogger(__name__)

GENERATION_COLUMNS = [
    "row_id", "prompt", "negative_prompt", "image", "withheld", "seed", "steps", "guidance", "width",
    "height", "subject", "version", "model", "lora_artifact", "front_end", "user_id", "user_name", "guild_id",
    "channel_id", "interaction_id", "message_link",
]
TABLE_KEY = "generations"
EVENTS_KEY = "community_events"
EVENT_COLUMNS = ["event", "row_id", "user_id", "guild_id", "detail", "at"]
_STOP = object()


@dataclass(frozen=True)
class CommunityEvent:
    """Something members did with a generated image: "share", "vote", "unvote", "delete", "remove"."""

    event: str
    row_id: str
    user_id: str
    guild_id: str = ""
    detail: str = ""
    at: str = ""  # ISO time; filled in when empty


@dataclass(frozen=True)
class WandbConfig:
    project: str
    mode: str  # "online", "offline" or "disabled"
    directory: Path
    entity: str | None = None
    api_key: str | None = None


def lora_artifact(generation: Generation) -> str:
    """The W&B model artifact of the LoRA that drew the images ("" for the base model): the training run
    logs `lora-<subject>` with the alias `version-<n>`."""
    result = generation.result
    return f"lora-{result.subject}:version-{result.version}" if result.version else ""


def generation_rows(generation: Generation) -> list[list[Any]]:
    """One row per image, in GENERATION_COLUMNS order; the image cell is filled in by the writer."""
    result, context = generation.result, generation.context
    return [
        [
            generation.row_id(image.index), result.prompt, result.negative_prompt, image.png, image.withheld,
            image.seed, result.steps, result.guidance, result.width, result.height, result.subject,
            result.version, result.model, lora_artifact(generation), context.front_end, context.user_id, context.user_name,
            context.guild_id, context.channel_id, context.interaction_id, context.message_link,
        ]
        for image in result.images
    ]


class WandbGenerationLog:
    """Logs generations to one W&B run (job_type "generate") from a background thread."""

    def __init__(self, config: WandbConfig) -> None:
        self.config = config
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failed = False
        self.run_url: str | None = None
        self.run_dir: Path | None = None

    def log_generation(self, generation: Generation) -> None:
        self._enqueue(generation)

    def log_event(self, event: CommunityEvent) -> None:
        """Shares, votes and deletions, against the generation's row id, so W&B shows what people liked."""
        if not event.at:
            event = replace(event, at=datetime.now(timezone.utc).isoformat())
        self._enqueue(event)

    def _enqueue(self, item) -> None:
        if self.config.mode == "disabled" or self._failed:
            return
        self._ensure_thread()
        self._queue.put(item)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything enqueued so far is written (tests, shutdown)."""
        done = threading.Event()
        if self._thread is None:
            return
        self._queue.put(done)
        done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="wandb-log", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        writer = None
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if isinstance(item, threading.Event):
                item.set()
                continue
            if self._failed:
                continue
            try:
                writer = writer or _TableWriter(self.config, self)
                writer.write(item)
            except Exception:
                self._failed = True
                log.exception("W&B logging failed; generation goes on without it (reported once)")
        if writer is not None:
            writer.finish()


class _TableWriter:
    """The wandb side, touched only by the logging thread."""

    def __init__(self, config: WandbConfig, owner: WandbGenerationLog) -> None:
        import wandb

        self.wandb = wandb
        config.directory.mkdir(parents=True, exist_ok=True)
        if config.api_key:
            wandb.login(key=config.api_key, verify=False)
        self.run = wandb.init(
            project=config.project, entity=config.entity, job_type="generate", mode=config.mode,
            dir=str(config.directory), reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        owner.run_url = self.run.url
        owner.run_dir = Path(self.run.dir).parent
        self.table = wandb.Table(columns=GENERATION_COLUMNS, log_mode="INCREMENTAL")
        self.events = wandb.Table(columns=EVENT_COLUMNS, log_mode="INCREMENTAL")
        self.used: set[str] = set()

    def write(self, item: Generation | CommunityEvent) -> None:
        if isinstance(item, CommunityEvent):
            self.events.add_data(*(getattr(item, column) for column in EVENT_COLUMNS))
            self.run.log({EVENTS_KEY: self.events})
        else:
            self._write_generation(item)

    def _write_generation(self, generation: Generation) -> None:
        from PIL import Image

        self._declare_use(lora_artifact(generation))
        for row in generation_rows(generation):
            png = row[3]
            row[3] = self.wandb.Image(Image.open(io.BytesIO(png))) if png else None
            self.table.add_data(*row)
        self.run.log({TABLE_KEY: self.table})

    def _declare_use(self, artifact: str) -> None:
        """Lineage in W&B: training images -> LoRA artifact -> this run's images. W&B refuses
        `use_artifact` offline, so offline runs carry the reference in each row only."""
        if not artifact or artifact in self.used or self.run.offline:
            return
        self.used.add(artifact)
        try:
            self.run.use_artifact(artifact)
        except Exception as error:  # an artifact logged by a failed W&B call: the rows still name it
            log.warning("W&B: could not declare use of %s (%s)", artifact, error.__class__.__name__)

    def finish(self) -> None:
        self.run.finish()
        # finish() can return before wandb-core has written the run's log; teardown waits for it.
        self.wandb.teardown()
