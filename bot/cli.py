"""`python -m bot inference` (`make inference`): one generation from the terminal, PNGs and JSON written."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TextIO

from bot.options import QWERTY_OPTIONS
from bot.progress_bar import GenerationBar
from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.context import RequestContext
from commands.errors import reply_for
from commands.generate import GenerateOptions
from commands.outputs import save_generation

log = logging.getLogger(__name__)


def fail(error: BaseException, where: str) -> int:
    """A command-line front end's error: one line for people on stderr (the details in the log), exit 2."""
    reply = reply_for(error)
    if reply.unexpected:
        log.error("unexpected error [ref %s] in %s", reply.reference, where, exc_info=error)
    print(f"error: {reply.text}", file=sys.stderr)
    return 2


def add_inference_arguments(parser: argparse.ArgumentParser, settings: BotSettings) -> None:
    """/qwerty's options as `--prompt-prefix` and so on; the prompt defaults to PROMPT_PREFIX/POSTFIX."""
    defaults = {"prompt_prefix": settings.PROMPT_PREFIX, "prompt_postfix": settings.PROMPT_POSTFIX}
    for spec in QWERTY_OPTIONS:
        parser.add_argument(
            f"--{spec.name.replace('_', '-')}", dest=spec.name, type=spec.kind, default=defaults.get(spec.name),
            help=spec.description,
        )


async def run_inference(args: argparse.Namespace, settings: BotSettings, progress_out: TextIO | None = None) -> int:
    """`progress_out`: where the progress bar draws (standard error when None; only on a terminal)."""
    app = make_app_services(settings)
    given = {spec.name: getattr(args, spec.name) for spec in QWERTY_OPTIONS}
    try:
        with GenerationBar(progress_out) as bar:
            generation = await app.qwerty.generate(GenerateOptions(**given), RequestContext(front_end="cli"), bar)
    except Exception as error:
        return fail(error, "inference")
    finally:
        await app.close()
    result = generation.result
    print(f"prompt: {result.prompt}")
    model = result.model + (f" + {result.subject} v{result.version}" if result.version else " (base model)")
    print(f"model: {model}")
    for path, image in zip(save_generation(generation, settings.OUTPUTS_DIR), result.images):
        print(f"wrote {path} (seed {image.seed})")
    for image in result.images:
        if image.withheld:
            print(f"image {image.index} (seed {image.seed}) was withheld by the safety checker")
    print(f"W&B run: {app.generation_log.run_url or app.generation_log.run_dir or 'disabled'}")
    return 0
