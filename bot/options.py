"""The options a member types, read from the pydantic request models: one declaration per option.

The request models (gpu_service.schemas) hold each option's type, bounds and description. From them come
the shell's parser and help, the CLI's arguments and `--help`, and the descriptions Discord shows
(bot/slash.py), so a new option is one edit to the model plus its name in the list below.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import BaseModel

from gpu_service.schemas import GenerateRequest, TrainRequest

# In the order Discord shows them; each is a field of the request model.
QWERTY_FIELDS = ("prompt_prefix", "prompt_postfix", "seed", "count", "negative_prompt", "steps", "guidance", "subject",
                 "aspect")
TRAIN_FIELDS = ("subject", "instance_phrase", "class_phrase", "steps")
IMAGE_OPTIONS = tuple(f"image{n}" for n in range(1, 9))


@dataclass(frozen=True)
class OptionSpec:
    name: str
    kind: type  # str, int or float: what the text is turned into
    description: str
    required: bool = False
    low: float | None = None
    high: float | None = None
    metavar: str = ""  # how help shows the value; by default from the kind (TEXT, N, X) or the choices
    choices: tuple[str, ...] = ()  # the only values accepted (Discord shows them as a list)

    def convert(self, text: str) -> Any:
        return self.kind(text)


def specs_of(model: type[BaseModel], names: Sequence[str], *, required: Sequence[str] = ()) -> tuple[OptionSpec, ...]:
    """One spec per named field: its plain type, description and bounds. `required`: the options a member
    must give (a field the use case fills in, like the subject or a known subject's phrases, is optional)."""
    fields = model.model_fields
    specs = []
    for name in names:
        field = fields[name]
        bounds = {type(m): m for m in field.metadata}
        low, high = bounds.get(Ge), bounds.get(Le)
        kind = _plain(field.annotation)
        choices = get_args(kind) if get_origin(kind) is Literal else ()
        specs.append(OptionSpec(
            name, str if choices else kind, field.description or name,
            required=name in required,
            low=low.ge if low else None, high=high.le if high else None,
            metavar="|".join(choices), choices=choices,
        ))
    return tuple(specs)


def _plain(annotation: Any) -> type:
    """`int | None` -> int; `Literal[...] | None` -> the Literal."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    return annotation


URLS = OptionSpec("urls", str, "Image links separated by spaces, or one link to a text file that lists them")
QWERTY_OPTIONS = specs_of(GenerateRequest, QWERTY_FIELDS, required=("prompt_prefix",))
TRAIN_OPTIONS = (
    URLS, *(OptionSpec(name, str, "A photo of the subject" if n == 0 else "Another photo")
            for n, name in enumerate(IMAGE_OPTIONS)),
    *specs_of(TrainRequest, TRAIN_FIELDS),
)


def descriptions(specs: Sequence[OptionSpec]) -> dict[str, str]:
    """For `app_commands.describe(**...)`."""
    return {spec.name: spec.description for spec in specs}


def usage(command: str, specs: Sequence[OptionSpec]) -> str:
    """`/qwerty prompt_prefix:TEXT [seed:N] ...` for the shell's help."""
    words = [f"/{command}"]
    for spec in specs:
        word = f"{spec.name}:{spec.metavar or _METAVAR[spec.kind]}"
        words.append(word if spec.required else f"[{word}]")
    return " ".join(words)


_METAVAR = {str: "TEXT", int: "N", float: "X"}
