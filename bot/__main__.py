"""Entry point. `python -m bot` runs the Discord bot; `shell` the same commands in a terminal; `sync`
registers the slash commands with Discord; `inference` generates once and writes PNGs; `model` trains;
`export` writes a version's LoRA file.

Exit status 2: bad settings or usage (a missing DISCORD_TOKEN among them). Exit status 3: a data file was
written by a newer version of the bot; restarting will not help (a service manager should not retry).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from bot.settings import BotSettings, MissingToken


def parse_args(argv: list[str] | None, settings: BotSettings) -> argparse.Namespace:
    return build_parser(settings).parse_args(argv)


def build_parser(settings: BotSettings) -> argparse.ArgumentParser:
    """Every command and option with a help text (`python -m bot <command> --help`)."""
    from bot.cli import add_inference_arguments

    parser = argparse.ArgumentParser(prog="python -m bot", description="Stable Qwerty's front ends.")
    commands = parser.add_subparsers(dest="command", metavar="command",
                                     help="what to run (default: the Discord bot); <command> --help for its options")
    commands.add_parser("shell", help="run the slash commands in a terminal (reads standard input)")
    commands.add_parser("sync", help="register the slash commands (globally, or to DISCORD_GUILD_ID) and exit")
    add_inference_arguments(commands.add_parser("inference", help="generate once and write PNGs"), settings)
    from bot.model_cli import add_model_arguments

    add_model_arguments(commands.add_parser("model", help="train the subject (IMAGES_FILE_URL or given images)"))
    from bot.export_cli import add_export_arguments

    add_export_arguments(commands.add_parser("export", help="write a version's LoRA file under OUTPUTS_DIR"))
    return parser


def settings_problems(error: ValidationError) -> str:
    """One line per bad setting, naming it and what is wrong, never its value (it may be a secret)."""
    lines = []
    for problem in error.errors(include_url=False, include_context=False):
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        message = str(problem["msg"]).removeprefix("Value error, ")
        value = problem.get("input")
        if isinstance(value, str) and value.strip():
            message = message.replace(repr(value), "(value not shown)").replace(value, "(value not shown)")
        lines.append(f"- {name}: {message}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = BotSettings()
    except ValidationError as error:
        print(f"error: invalid settings:\n{settings_problems(error)}", file=sys.stderr)
        return 2
    except SettingsError as error:  # a value pydantic-settings could not even parse; its message names the field
        print(f"error: invalid settings: {error}", file=sys.stderr)
        return 2
    args = parse_args(argv, settings)
    from bot.wiring import keep_wandb_files_in_data_dir

    keep_wandb_files_in_data_dir(settings, os.environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_run(args, settings))
    except MissingToken as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


EXIT_SCHEMA_TOO_NEW = 3


async def _run(args: argparse.Namespace, settings: BotSettings) -> int:
    from commands.sqlite_file import SchemaTooNew

    try:
        return await _run_command(args, settings)
    except SchemaTooNew as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_SCHEMA_TOO_NEW


async def _run_command(args: argparse.Namespace, settings: BotSettings) -> int:
    if args.command == "inference":
        from bot.cli import run_inference

        return await run_inference(args, settings)
    if args.command == "model":
        from bot.model_cli import run_model

        return await run_model(args, settings)
    if args.command == "export":
        from bot.export_cli import run_export

        return await run_export(args, settings)
    if args.command == "shell":
        from bot.shell import run_shell

        return await run_shell(settings)
    token = settings.discord_token()  # before anything is built: a missing token fails at once
    from bot.serve import point_discord_py_at

    point_discord_py_at(settings)
    if args.command == "sync":
        from bot.app import sync_commands

        names = await sync_commands(settings)
        where = f"guild {settings.DISCORD_GUILD_ID}" if settings.DISCORD_GUILD_ID else "all guilds (global)"
        print(f"synced {', '.join('/' + n for n in names)} to {where}")
        return 0
    from bot.serve import serve

    return await serve(settings, token)


if __name__ == "__main__":
    raise SystemExit(main())
