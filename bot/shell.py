"""`python -m bot shell`: the slash commands in a terminal, like Hubot's shell adapter or Errbot's text
backend. Reads one command per line from standard input (a prompt when it is a terminal), so a script
can drive it:

    /train urls:data/demo/images steps:50
    /qwerty prompt_prefix:"a gorgeous painting of a" prompt_postfix:"in space" count:2
    /share job:0a1b2c3d4e5f image:1

The same commands/ use cases as Discord run here; images are saved under OUTPUTS_DIR and their paths
printed (bot/shell_delivery.py). The shell is local and trusted: its user is an admin and a moderator,
and /train reads files and folders. The buttons of a Discord message are commands here, by job and image
id (bot/shell_actions.py).
Exit status: 0 when every command succeeded, 1 when any failed (so `make demo` stops on an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from bot import render
from bot.lazy_gpu import LazyGpuClient
from bot.settings import BotSettings
from bot.shell_actions import ShellActions
from bot.shell_delivery import ShellDelivery
from bot.shell_parse import ACTION_OPTIONS, ShellCommand, generate_options, help_text, parse_line, train_options
from bot.wiring import AppServices, make_app_services, make_gpu_client
from commands.context import RequestContext
from commands.errors import reply_for
from commands.jobs import JobRecord
from commands.permissions import Caller
from commands.recovery import interrupted_text, recover
from gpu_service.client import GpuClient
from gpu_service.schemas import TrainProgress

log = logging.getLogger(__name__)
PROMPT = "qwerty> "
HISTORY_FILE = "shell_history"  # under DATA_DIR
HISTORY_LENGTH = 1000


class Shell:
    def __init__(
        self, app: AppServices, settings: BotSettings, out: TextIO, progress_out: TextIO | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.out = out
        self.context = RequestContext(front_end="shell", user_id=_user(), user_name=_user())
        self.failures = 0
        self.delivery = ShellDelivery(app.qwerty, settings.OUTPUTS_DIR, self.say, progress_out)
        self.actions = ShellActions(app, self.context, settings.OUTPUTS_DIR, self.delivery, self.say)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def recover(self) -> None:
        async def report(record: JobRecord) -> None:
            self.say(f"note: job {record.job_id}: {interrupted_text(record)}")

        await recover(self.app.jobs, "shell", report=report)

    async def run_line(self, line: str) -> bool:
        """Run one line; False when the shell should stop."""
        try:
            command = parse_line(line)
            if command is None:
                return True
            if command.name == "quit":
                return False
            await self.run(command)
        except Exception as error:
            self.failures += 1
            self.report(error)
        return True

    async def run(self, command: ShellCommand) -> None:
        if command.name == "help":
            self.say(help_text())
        elif command.name == "qwerty":
            await self.qwerty(command)
        elif command.name in ACTION_OPTIONS:
            await self.actions.run(command)
        else:
            await self.train(command)

    def report(self, error: BaseException) -> None:
        reply = reply_for(error)
        if reply.unexpected:
            log.error("unexpected error [ref %s] in the shell", reply.reference, exc_info=error)
        self.say(f"error: {reply.text}")

    async def qwerty(self, command: ShellCommand) -> None:
        await self.delivery.deliver(self.app.qwerty.admit(generate_options(command.options), self.context))

    async def train(self, command: ShellCommand) -> None:
        options = train_options(command.options)
        async with self.app.training.preparing(options, self.context, Caller.local_operator()) as prepared:
            self.say(render.plain(render.training_started(prepared, "printed here")))
            result = await self.app.training.run(prepared, self._throttled(prepared.request.subject))
        version = result.version
        self.say(f"Training finished: trained {version.subject} v{version.version} (live now); "
                 f"W&B: {version.wandb_url or 'n/a'}")
        for line in render.quality_lines(version.quality):
            self.say(line)
        directory = self.settings.OUTPUTS_DIR
        card = render.write_report_card(result, directory)
        if card is not None:
            self.say(f"report card: {card}")
        directory.mkdir(parents=True, exist_ok=True)
        for index, png in enumerate(result.validation_images):
            path = directory / f"{version.subject}-v{version.version}-sample-{index}.png"
            path.write_bytes(png)
            self.say(f"wrote {path}")

    def _throttled(self, subject: str):
        last = [0.0]

        def show(progress: TrainProgress) -> None:
            now = time.monotonic()
            if now - last[0] >= self.settings.PROGRESS_INTERVAL_S or progress.state in ("done", "failed"):
                last[0] = now
                self.say(render.plain(render.train_progress(subject, progress)))

        return show


async def run_shell(
    settings: BotSettings, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, gpu: GpuClient | None = None,
    progress_out: TextIO | None = None,
) -> int:
    """`progress_out`: where a /qwerty's progress bar draws (standard error when None; only on a terminal)."""
    # Built on first use: `help` or a typo answers at once, without loading the engine.
    gpu = gpu or LazyGpuClient(functools.partial(make_gpu_client, settings), backend=settings.GPU_BACKEND)
    app = make_app_services(settings, gpu)
    shell = Shell(app, settings, stdout, progress_out)
    interactive = stdin.isatty()
    try:
        await shell.recover()
        if interactive:
            shell.say("Stable Qwerty shell: type help, or a command such as /qwerty prompt_prefix:\"a painting of a\"")
            with line_history(settings.DATA_DIR / HISTORY_FILE):
                await _run_lines(shell, _read_typed)
        else:
            await _run_lines(shell, stdin.readline)
    finally:
        await app.close()
    return 1 if shell.failures else 0


async def _run_lines(shell: Shell, read_line) -> None:
    while True:
        line = await asyncio.to_thread(read_line)
        if not line or not await shell.run_line(line):
            break


def _read_typed() -> str:
    """A line typed at the terminal, with readline's editing and history; "" at end of input (Ctrl-D)."""
    try:
        return input(PROMPT) + "\n"
    except EOFError:
        return ""


@contextlib.contextmanager
def line_history(path: Path) -> Iterator[None]:
    """Arrow keys recall earlier commands, this session's and earlier ones' (kept in `path`)."""
    try:
        import readline
    except ImportError:  # not on every platform: the shell works without history
        yield
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(HISTORY_LENGTH)
    try:
        yield
    finally:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
        except OSError:
            log.warning("could not save the shell's history to %s", path, exc_info=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "shell"
