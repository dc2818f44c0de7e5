"""/help: what each command does, the subjects this server can draw, and two prompts to start from.

The command lines are read from the registered commands' own descriptions, so /help never lists a
command Discord does not offer, nor misses one.
"""

from __future__ import annotations

from collections.abc import Sequence

import discord
from discord import app_commands

from bot import render
from commands.subjects import SubjectCatalog
from gpu_service.schemas import ModelVersion

EXAMPLES = (
    '/qwerty prompt_prefix:"a gorgeous painting of a" prompt_postfix:"in a psychedelic 1970s style"',
    '/qwerty prompt_prefix:"a photo of a" prompt_postfix:"wearing sunglasses on a beach" aspect:wide count:4',
)
BUTTONS = (
    "Under each picture: 🎲 Reroll (new seeds), ✏️ Edit (change the words), 🎨 Variations (more like one image), "
    "📌 Share (to the gallery), 🗑 Delete. Right-click a picture message › Apps › **Vary this image** does what "
    "Variations does. In the gallery, ⭐ votes and a second ⭐ takes the vote back."
)


def help_text(commands: Sequence[app_commands.Command | app_commands.Group], subjects: Sequence[ModelVersion]) -> str:
    lines = ["**Commands**"]
    lines += [f"`/{command.name}` {command.description}" for command in commands]
    lines += ["", BUTTONS, "", "**Subjects on this server** (`subject:` of /qwerty)"]
    lines += [f"`{v.name}`: {v.instance_phrase} (version {v.version})" for v in subjects] or [
        "None trained yet: /qwerty draws the default subject, and admins can /train one."]
    lines += ["", "**Try**", *(f"`{example}`" for example in EXAMPLES)]
    return render.clip("\n".join(lines))


async def answer_help(
    interaction: discord.Interaction, catalog: SubjectCatalog,
    commands: Sequence[app_commands.Command | app_commands.Group],
) -> None:
    """Only the member who asked sees it."""
    subjects = await catalog.matching("", str(interaction.guild_id or ""))
    await interaction.response.send_message(help_text(commands, subjects), ephemeral=True)
