"""`python -m bot model` (`make model`): train the default subject from the terminal.

Images come from IMAGES_FILE_URL (a text file listing image URLs) unless IMAGES names links, files or
folders. A progress bar follows the training; the end prints the new version and the W&B location.
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from bot.cli import fail
from bot.render import quality_lines, write_report_card
from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.context import RequestContext
from commands.errors import redact_links
from commands.permissions import Caller
from commands.train import TrainOptions
from gpu_service.intake import display_name
from gpu_service.schemas import TrainProgress


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", help="image links, files or folders (default: IMAGES_FILE_URL)")
    parser.add_argument("--subject", default=None, help="the subject to train (default: DEFAULT_SUBJECT)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: TRAIN_STEPS, at most MAX_TRAIN_STEPS)")


class ProgressBar:
    """A tqdm bar over training steps; state changes and the loss show in its postfix."""

    def __init__(self) -> None:
        self.bar = tqdm(total=0, unit="step", dynamic_ncols=True)

    def __call__(self, progress: TrainProgress) -> None:
        if progress.total_steps and self.bar.total != progress.total_steps:
            self.bar.reset(total=progress.total_steps)
        self.bar.update(max(0, progress.step - self.bar.n))
        postfix = {"state": progress.state}
        if progress.loss is not None:
            postfix["loss"] = f"{progress.loss:.4f}"
        self.bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        self.bar.close()


async def run_model(args: argparse.Namespace, settings: BotSettings) -> int:
    app = make_app_services(settings)
    options = TrainOptions(subject=args.subject, steps=args.steps, urls=" ".join(args.images), local_files=True)
    bar = ProgressBar()
    try:
        for stale in await app.jobs.unfinished("cli"):  # a `make model` killed earlier: say so, don't linger
            await app.jobs.update(stale.job_id, state="failed", error="interrupted (the command was stopped)")
        context = RequestContext(front_end="cli")
        async with app.training.preparing(options, context, Caller.local_operator()) as prepared:
            for rejection in prepared.rejected:
                print(f"skipped {display_name(rejection.name)}: {rejection.reason}")
            result = await app.training.run(prepared, bar)
    except Exception as error:
        bar.close()
        return fail(error, "make model")
    finally:
        await app.close()
    bar.close()
    version = result.version
    for line in result.rejected_images:
        print(f"skipped {redact_links(line)}")
    print(f"Training finished: version {version.version} of '{version.subject}' is live ({version.instance_phrase})")
    for line in quality_lines(version.quality):
        print(line)
    card = write_report_card(result, settings.OUTPUTS_DIR)
    if card is not None:
        print(f"report card: {card}")
    print(f"W&B run: {version.wandb_url or 'not logged'}")
    return 0
