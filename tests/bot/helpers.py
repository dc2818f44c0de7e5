"""Small helpers for the Discord tests of the buttons, the gallery and the admin commands."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

DEFERRED, MESSAGE, UPDATE = 5, 4, 7
BUTTON, SELECT = 2, 3
MANAGE_MESSAGES = 1 << 13


def is_answer(sent) -> bool:
    return sent.kind == "followup"


def custom_ids(components: Iterable[Mapping[str, Any]]) -> list[str]:
    return list(_walk(components))


def _walk(components) -> Iterator[str]:
    for component in components:
        if "custom_id" in component:
            yield component["custom_id"]
        yield from _walk(component.get("components", []))


def buttons(stub, message_id) -> dict[str, dict]:
    """custom id -> component, of a message as the stub holds it now."""
    found = {}
    for row in stub.message(message_id)["components"]:
        for component in row.get("components", []):
            found[component["custom_id"]] = component
    return found


def seeds_of(content: str) -> list[int]:
    line = next(part for part in content.splitlines() if part.startswith("seed"))
    words = line.split(" · ")[0].split(" ", 1)[1]
    return [int(seed) for seed in words.split(", ")]


async def qwerty(stub, options: Mapping[str, Any], **who):
    """Run /qwerty and return its answer (the follow-up with the images)."""
    interaction = await stub.slash_command("qwerty", dict(options), **who)
    return await interaction.responses.wait_for(is_answer, timeout=15)


async def click(stub, message_id, custom_id: str, **who):
    return await stub.click(message_id, custom_id, **who)


def job_of(answer) -> str:
    reroll = next(c for c in custom_ids(answer.message["components"]) if c.startswith("sq:reroll:"))
    return reroll.split(":")[2]
