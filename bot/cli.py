"""`python -m bot inference`: one generation from the terminal, as the old demo's `make inference`."""

from __future__ import annotations

import argparse

from bot.wiring import make_services
from commands.context import RequestContext
from commands.generate import GenerateOptions
from commands.outputs import save_generation
from gpu_service.errors import GpuServiceError
from gpu_service.settings import Settings


def add_inference_arguments(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("--prompt-prefix", default=settings.PROMPT_PREFIX)
    parser.add_argument("--prompt-postfix", default=settings.PROMPT_POSTFIX)
    parser.add_argument("--subject", default=None)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)


async def run_inference(args: argparse.Namespace, settings: Settings) -> int:
    services = make_services(settings)
    options = GenerateOptions(
        prompt_prefix=args.prompt_prefix, prompt_postfix=args.prompt_postfix, subject=args.subject,
        negative_prompt=args.negative_prompt, seed=args.seed, count=args.count, steps=args.steps,
        guidance=args.guidance,
    )
    try:
        generation = await services.generation.generate(options, RequestContext(front_end="cli"))
    except GpuServiceError as error:
        print(f"error: {error}")
        return 2
    finally:
        await services.close()
    result = generation.result
    print(f"prompt: {result.prompt}")
    model = result.model + (f" + {result.subject} v{result.version}" if result.version else " (base model)")
    print(f"model: {model}")
    for path, image in zip(save_generation(generation, settings.OUTPUTS_DIR), result.images):
        print(f"wrote {path} (seed {image.seed})")
    for image in result.images:
        if image.withheld:
            print(f"image {image.index} (seed {image.seed}) was withheld by the safety checker")
    print(f"W&B run: {services.generation_log.run_url or services.generation_log.run_dir or 'disabled'}")
    return 0
