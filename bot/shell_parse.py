"""Reading a slash command typed in a terminal: `/qwerty prompt_prefix:"a painting of a" count:2`.

Options are written as Discord's client shows them, `name:value`, quoted with shell rules when the value
has spaces. Types and names are checked here, with messages that name the option, before any work.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from commands.generate import GenerateOptions
from commands.train import TrainOptions
from gpu_service.errors import InvalidRequest

Convert = Callable[[str], Any]

QWERTY_OPTIONS: Mapping[str, Convert] = {
    "prompt_prefix": str, "prompt_postfix": str, "seed": int, "count": int, "negative_prompt": str,
    "steps": int, "guidance": float, "subject": str,
}
IMAGE_OPTIONS = tuple(f"image{n}" for n in range(1, 9))
TRAIN_OPTIONS: Mapping[str, Convert] = {
    "urls": str, **{name: str for name in IMAGE_OPTIONS}, "subject": str, "instance_phrase": str,
    "class_phrase": str, "steps": int,
}
# The buttons and admin commands, by job and image id (an image id is its index in the row id and file
# name, `<job>-<index>.png`, counted from 0).
ACTION_OPTIONS: Mapping[str, Mapping[str, Convert]] = {
    "reroll": {"job": str}, "variations": {"job": str, "image": int}, "share": {"job": str, "image": int},
    "delete": {"job": str}, "vote": {"share": str}, "remove": {"share": str}, "top": {"period": str},
    "banned": {"action": str, "words": str}, "models": {}, "rollback": {"subject": str, "version": int},
    "status": {},
}
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "reroll": ("job",), "variations": ("job",), "share": ("job",), "delete": ("job",), "vote": ("share",),
    "remove": ("share",), "banned": ("action",), "rollback": ("subject",),
}
COMMANDS: Mapping[str, Mapping[str, Convert]] = {"qwerty": QWERTY_OPTIONS, "train": TRAIN_OPTIONS, **ACTION_OPTIONS}
WORDS = ("help", "quit", "exit")
_TYPE_NAMES = {int: "a whole number", float: "a number", str: "text"}


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
        raise InvalidRequest(f"Unknown command {words[0]!r}: try {known}, help or quit.")
    options = _options(name, words[1:])
    missing = [option for option in REQUIRED.get(name, ()) if option not in options]
    if missing:
        raise InvalidRequest(f"/{name} needs {', '.join(f'`{m}`' for m in missing)}, e.g. {missing[0]}:...")
    return ShellCommand(name, options)


def _options(command: str, words: list[str]) -> dict[str, Any]:
    spec = COMMANDS[command]
    options: dict[str, Any] = {}
    for word in words:
        key, colon, value = word.partition(":")
        key = key.strip().lower()
        if not colon:
            raise InvalidRequest(f"Write options as name:value (got {word!r}), e.g. prompt_prefix:\"a cat\".")
        if key not in spec:
            raise InvalidRequest(f"/{command} has no option `{key}`; its options: {', '.join(spec)}.")
        if key in options:
            raise InvalidRequest(f"`{key}` is given twice.")
        options[key] = _convert(key, value, spec[key])
    return options


def _convert(key: str, value: str, convert: Convert) -> Any:
    try:
        return convert(value)
    except ValueError:
        raise InvalidRequest(f"`{key}` must be {_TYPE_NAMES.get(convert, 'valid')} (got {value!r}).") from None


def generate_options(options: Mapping[str, Any]) -> GenerateOptions:
    if "prompt_prefix" not in options:
        raise InvalidRequest('/qwerty needs `prompt_prefix`, e.g. prompt_prefix:"a gorgeous painting of a".')
    return GenerateOptions(**options)


def train_options(options: Mapping[str, Any]) -> TrainOptions:
    """The shell is local and trusted: `urls` and image1..image8 may also name files or folders."""
    given = dict(options)
    words = [given.pop("urls", "")] + [given.pop(name) for name in IMAGE_OPTIONS if name in given]
    return TrainOptions(**given, urls=" ".join(w for w in words if w), local_files=True)
