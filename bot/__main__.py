"""Entry point: `python -m bot` runs the Discord bot; subcommands run the other front ends."""

from __future__ import annotations

import argparse
import asyncio
import logging

from gpu_service.settings import Settings


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m bot")
    commands = parser.add_subparsers(dest="command")
    from bot.cli import add_inference_arguments, run_inference

    add_inference_arguments(commands.add_parser("inference", help="generate once and write PNGs"), settings)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "inference":
        return asyncio.run(run_inference(args, settings))
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
