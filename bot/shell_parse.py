"""Reading a slash command typed in a terminal: `/qwerty prompt_prefix:"a painting of a" count:2`.

Options are written as Discord's client shows them, `name:value`, quoted with shell rules when the value
has spaces. /qwerty's and /train's options come from the request models (bot/options.py); the shell's own
commands (a message's buttons, the gallery and admin commands) are declared here. Types and names are
checked here, with messages that name the option, before any work.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.options import IMAGE_OPTIONS, QWERTY_OPTIONS, TRAIN_OPTIONS, OptionSpec, usage
from commands.generate import GenerateOptions
from commands.train import TrainOptions
from gpu_service.errors import InvalidRequest


def _spec(name: str, kind: type, description: str, required: bool = False, metavar: str = "") -> OptionSpec:
    return OptionSpec(name, kind, description, required=required, metavar=metavar)


_JOB = _spec("job", str, "a job id, as the shell prints it", required=True, metavar="ID")
_IMAGE = _spec("image", int, "an image's index N in <job>-N.png, from 0")
_SHARE = _spec("share", str, "a share id", required=True, metavar="ID")
# The buttons of a Discord message and the gallery/admin commands, by job, image and share id.
ACTION_OPTIONS: Mapping[str, tuple[OptionSpec, ...]] = {
    "reroll": (_JOB,), "variations": (_JOB, _IMAGE), "share": (_JOB, _IMAGE), "delete": (_JOB,),
    "vote": (_SHARE,), "remove": (_SHARE,), "top": (_spec("period", str, "day, week or all", metavar="day|week|all"),),
    "banned": (_spec("action", str, "add, remove or list", required=True, metavar="add|remove|list"),
               _spec("words", str, "words separated by commas", metavar='"a, b"')),
    "models": (),
    "rollback": (_spec("subject", str, "a subject", required=True, metavar="NAME"), _spec("version", int, "N")),
    "export": (_spec("subject", str, "a subject", required=True, metavar="NAME"),
               _spec("version", int, "a version", required=True),
               _spec("format", str, "diffusers (default) or kohya", metavar="diffusers|kohya")),
    "status": (),
    "settings": (_spec("subject", str, "the default subject", metavar="NAME"), _spec("steps", int, "default steps"),
                 _spec("spoiler", str, "spoilers on or off", metavar="on|off"),
                 _spec("gallery", str, "the gallery on or off", metavar="on|off")),
}
COMMANDS: Mapping[str, tuple[OptionSpec, ...]] = {"qwerty": QWERTY_OPTIONS, "train": TRAIN_OPTIONS, **ACTION_OPTIONS}
WORDS = ("help", "quit", "exit")
_TYPE_NAMES = {int: "a whole number", float: "a number", str: "text"}


def help_text() -> str:
    lines = ["Commands (options as name:value; quote values with spaces):"]
    lines += [f"  {usage(name, specs)}" for name, specs in COMMANDS.items()]
    lines.append("  (/train urls and image1..image8 may also name local files or folders; an image id N is the")
    lines.append("   index in <job>-N.png, from 0)")
    lines += ["  help    this text", "  quit    leave (end of input does too)"]
    return "\n".join(lines)


@dataclass(frozen=True)
class ShellCommand:
    name: str  # a command of COMMANDS, "help" or "quit"
    options: dict[str, Any]


def parse_line(line: str) -> ShellCommand | None:
    """A command, or None for a blank line or a `#` comment; InvalidRequest names what is wrong."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as error:  # an unclosed quote
        raise InvalidRequest(f"Could not read that line: {error}.") from None
    if not words:
        return None
    name = words[0].removeprefix("/").lower()
    if name in WORDS:
        return ShellCommand("quit" if name == "exit" else name, {})
    if name not in COMMANDS:
        known = ", ".join(f"/{c}" for c in COMMANDS)
        raise InvalidRequest(f"Unknown command {words[0][:40]!r}: try {known}, help or quit.")
    options = _options(name, words[1:])
    missing = [spec.name for spec in COMMANDS[name] if spec.required and spec.name not in options]
    if missing:
        raise InvalidRequest(f"/{name} needs {', '.join(f'`{m}`' for m in missing)}, e.g. {missing[0]}:...")
    return ShellCommand(name, options)


def _options(command: str, words: list[str]) -> dict[str, Any]:
    specs = {spec.name: spec for spec in COMMANDS[command]}
    options: dict[str, Any] = {}
    for word in words:
        key, colon, value = word.partition(":")
        key = key.strip().lower()
        if not colon:
            raise InvalidRequest(f"Write options as name:value (got {word[:40]!r}), e.g. prompt_prefix:\"a cat\".")
        if key not in specs:
            raise InvalidRequest(f"/{command} has no option `{key[:40]}`; its options: {', '.join(specs)}.")
        if key in options:
            raise InvalidRequest(f"`{key}` is given twice.")
        options[key] = _convert(specs[key], value)
    return options


def _convert(spec: OptionSpec, value: str) -> Any:
    try:
        return spec.convert(value)
    except ValueError:
        raise InvalidRequest(
            f"`{spec.name}` must be {_TYPE_NAMES.get(spec.kind, 'valid')} (got {value[:40]!r})."
        ) from None


def generate_options(options: Mapping[str, Any]) -> GenerateOptions:
    return GenerateOptions(**options)


def train_options(options: Mapping[str, Any]) -> TrainOptions:
    """The shell is local and trusted: `urls` and image1..image8 may also name files or folders."""
    given = dict(options)
    words = [given.pop("urls", "")] + [given.pop(name) for name in IMAGE_OPTIONS if name in given]
    return TrainOptions(**given, urls=" ".join(w for w in words if w), local_files=True)
