"""Every prompt and output goes to a W&B Table, off the request path, never breaking generation.
Refused prompts go to a table of their own (`refused_prompts`, no image), so moderators see what was tried.

A single background thread owns the run: `log_generation` only enqueues. wandb is imported in that
thread, so a bot that never generates never pays for the import.

W&B being down never switches logging off: rows wait in a bounded buffer (the oldest are dropped past
it, each one logged by row id) while the thread reconnects with exponential backoff, and are written,
in order, once a run starts again. The API key reaches W&B through the run's settings only: nothing is
written to ~/.netrc or anywhere else.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from commands.generate import Generation, Refusal
from gpu_service.subjects import artifact_slug

log = logging.getLogger(__name__)

GENERATION_COLUMNS = [
    "row_id", "prompt", "negative_prompt", "image", "withheld", "seed", "steps", "guidance", "width",
    "height", "subject", "version", "model", "lora_artifact", "front_end", "user_id", "user_name", "guild_id",
    "channel_id", "interaction_id", "message_link",
]
TABLE_KEY = "generations"
EVENTS_KEY = "community_events"
EVENT_COLUMNS = ["event", "row_id", "user_id", "guild_id", "detail", "at"]
REFUSALS_KEY = "refused_prompts"
REFUSAL_COLUMNS = [
    "refusal_id", "prompt_prefix", "prompt_postfix", "negative_prompt", "subject", "reason", "front_end",
    "user_id", "user_name", "guild_id", "channel_id", "interaction_id", "at",
]
ROW_ATTEMPTS = 3  # a row W&B refuses this often on a working run is dropped, so it cannot block the rest


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
    api_key: str | None = field(default=None, repr=False)  # never in a repr, a log line or a run's config
    buffer_rows: int = 256  # rows held while W&B is unreachable (images included: keep it modest)
    retry_first_s: float = 1.0  # the wait after the first failure; doubled after each further one
    retry_max_s: float = 300.0
    init_timeout_s: float = 60.0  # how long one attempt to start a run may take (online: network retries)


@dataclass(frozen=True)
class LogStats:
    """What became of the rows so far, for /status and the logs."""

    rows_logged: int
    rows_buffered: int  # rows that had to wait for W&B to come back
    rows_dropped: int
    rows_waiting: int
    down: bool  # the last attempt to write failed; the thread is waiting to retry


def lora_artifact(generation: Generation) -> str:
    """The W&B model artifact of the LoRA that drew the images ("" for the base model): the training run
    logs `lora-<subject>` with the alias `version-<n>`."""
    result = generation.result
    return f"lora-{artifact_slug(result.subject)}:version-{result.version}" if result.version else ""


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


@dataclass(frozen=True)
class _RefusedPrompt:
    refusal: Refusal
    at: str  # ISO time it was refused

    def row(self) -> list[Any]:
        """In REFUSAL_COLUMNS order."""
        refusal, options, context = self.refusal, self.refusal.options, self.refusal.context
        return [
            refusal.refusal_id, options.prompt_prefix, options.prompt_postfix, options.negative_prompt,
            options.subject or "", refusal.reason, context.front_end, context.user_id, context.user_name,
            context.guild_id, context.channel_id, context.interaction_id, self.at,
        ]


Item = Generation | CommunityEvent | _RefusedPrompt


@dataclass
class _Entry:
    item: Item
    rows: int
    attempts: int = 0

    @classmethod
    def of(cls, item: Item) -> _Entry:
        return cls(item, len(item.result.images) if isinstance(item, Generation) else 1)

    def describe(self) -> str:
        item = self.item
        if isinstance(item, CommunityEvent):
            return f"community event {item.event!r} on row {item.row_id}"
        if isinstance(item, _RefusedPrompt):
            return f"refused prompt {item.refusal.refusal_id}"
        return "generation rows " + ", ".join(item.row_id(image.index) for image in item.result.images)


class WandbGenerationLog:
    """Logs generations to one W&B run (job_type "generate") from a background thread."""

    def __init__(self, config: WandbConfig) -> None:
        self.config = config
        self._changed = threading.Condition()  # guards everything below; notified on every change
        self._pending: deque[_Entry] = deque()
        self._in_flight: _Entry | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._down = False
        self._failures = 0  # in a row, for the backoff
        self._retry_at = 0.0
        self._logged = self._buffered = self._dropped = 0
        self.run_url: str | None = None
        self.run_dir: Path | None = None

    def log_generation(self, generation: Generation) -> None:
        self._enqueue(_Entry.of(generation))

    def log_event(self, event: CommunityEvent) -> None:
        """Shares, votes and deletions, against the generation's row id, so W&B shows what people liked."""
        if not event.at:
            event = replace(event, at=datetime.now(timezone.utc).isoformat())
        self._enqueue(_Entry.of(event))

    def log_refusal(self, refusal: Refusal) -> None:
        """A prompt refused at admission, with the reason and no image."""
        self._enqueue(_Entry.of(_RefusedPrompt(refusal, datetime.now(timezone.utc).isoformat())))

    def stats(self) -> LogStats:
        with self._changed:
            return LogStats(self._logged, self._buffered, self._dropped, self._waiting_rows(), self._down)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything enqueued so far is written, or held because W&B is down (tests, shutdown).
        True when nothing is left waiting."""
        with self._changed:
            self._changed.wait_for(lambda: self._idle() or self._down or self._thread is None, timeout)
            return self._idle()

    def close(self, timeout: float = 30.0) -> None:
        """Write what is waiting if W&B is up and finish the run; rows still waiting are dropped, and logged."""
        with self._changed:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._changed.notify_all()
        if thread is not None:
            thread.join(timeout)

    def _idle(self) -> bool:
        return not self._pending and self._in_flight is None

    def _enqueue(self, entry: _Entry) -> None:
        if self.config.mode == "disabled":
            return
        with self._changed:
            if self._stopping:
                self._drop(entry, "logging is closed")
                return
            self._pending.append(entry)
            if self._down:
                self._buffered += entry.rows
            while self._pending and self._waiting_rows() > self.config.buffer_rows:
                self._drop(self._pending.popleft(), "the buffer is full while W&B is unreachable")
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="wandb-log", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def _waiting_rows(self) -> int:
        in_flight = self._in_flight.rows if self._in_flight else 0
        return in_flight + sum(entry.rows for entry in self._pending)

    def _drop(self, entry: _Entry, why: str) -> None:
        self._dropped += entry.rows
        log.warning("W&B: dropped %s (%s; %d rows dropped so far)", entry.describe(), why, self._dropped)

    # On the logging thread

    def _drain(self) -> None:
        writer = None
        while (entry := self._next()) is not None:
            writer = self._write(writer, entry)
        if writer is not None:
            _close_quietly(writer)
        with self._changed:
            while self._pending:
                self._drop(self._pending.popleft(), "W&B was unreachable when logging closed")
            self._changed.notify_all()

    def _next(self) -> _Entry | None:
        """The oldest waiting entry once the backoff allows; None when closing and W&B is down or all is written."""
        with self._changed:
            while True:
                if self._stopping and (self._down or not self._pending):
                    return None
                wait = self._retry_at - time.monotonic() if self._down else 0.0
                if self._pending and wait <= 0:
                    self._in_flight = self._pending.popleft()
                    return self._in_flight
                self._changed.wait(wait if self._pending else None)

    def _write(self, writer: _TableWriter | None, entry: _Entry) -> _TableWriter | None:
        """Write one entry, starting a run first if there is none; the writer to use next (None: W&B is down)."""
        try:
            writer = writer or _TableWriter(self.config, self)
        except Exception as error:
            self._failed(entry, error, row_refused=False)
            return None
        try:
            writer.write(entry.item)
        except Exception as error:
            self._failed(entry, error, row_refused=True)
            _close_quietly(writer)
            return None
        self._written(entry)
        return writer

    def _written(self, entry: _Entry) -> None:
        with self._changed:
            self._in_flight = None
            self._logged += entry.rows
            if self._down:
                log.warning("W&B logging is back after %d failed attempts; writing %d waiting rows",
                            self._failures, self._waiting_rows())
            self._down, self._failures = False, 0
            self._changed.notify_all()

    def _failed(self, entry: _Entry, error: Exception, *, row_refused: bool) -> None:
        with self._changed:
            self._in_flight = None
            entry.attempts += row_refused
            if entry.attempts >= ROW_ATTEMPTS:
                self._drop(entry, f"W&B refused it {entry.attempts} times")
            else:
                self._pending.appendleft(entry)
            delay = min(self.config.retry_first_s * 2 ** self._failures, self.config.retry_max_s)
            self._failures += 1
            self._retry_at = time.monotonic() + delay
            if not self._down:
                self._down = True
                self._buffered += self._waiting_rows()
                log.error("W&B logging failed; rows wait in a buffer of %d and it retries in %.0f s",
                          self.config.buffer_rows, delay, exc_info=error)
            else:
                log.warning("W&B still unreachable (%s, attempt %d); retrying in %.0f s",
                            error.__class__.__name__, self._failures, delay)
            self._changed.notify_all()


def _close_quietly(writer: _TableWriter) -> None:
    try:
        writer.finish()
    except Exception as error:  # the run is gone either way; its rows were counted when written
        log.warning("W&B: could not finish the run cleanly (%s)", error.__class__.__name__)


class _TableWriter:
    """The wandb side, touched only by the logging thread."""

    def __init__(self, config: WandbConfig, owner: WandbGenerationLog) -> None:
        import wandb

        self.wandb = wandb
        config.directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=config.project, entity=config.entity, job_type="generate", mode=config.mode,
            dir=str(config.directory), reinit="create_new",
            settings=wandb.Settings(
                silent=True, console="off", api_key=config.api_key, init_timeout=config.init_timeout_s,
            ),
        )
        owner.run_url = self.run.url
        owner.run_dir = Path(self.run.dir).parent
        self.table = wandb.Table(columns=GENERATION_COLUMNS, log_mode="INCREMENTAL")
        self.events = wandb.Table(columns=EVENT_COLUMNS, log_mode="INCREMENTAL")
        self.refusals = wandb.Table(columns=REFUSAL_COLUMNS, log_mode="INCREMENTAL")
        self.used: set[str] = set()

    def write(self, item: Item) -> None:
        if isinstance(item, CommunityEvent):
            self.events.add_data(*(getattr(item, column) for column in EVENT_COLUMNS))
            self.run.log({EVENTS_KEY: self.events})
        elif isinstance(item, _RefusedPrompt):
            self.refusals.add_data(*item.row())
            self.run.log({REFUSALS_KEY: self.refusals})
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
