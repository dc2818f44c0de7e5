"""The slash commands as Discord shows them: names, descriptions, options, limits.

The callbacks only turn options into the commands/ layer's option objects and hand them to the bot's
handlers (`interaction.client.handlers`), so the same definitions serve the running bot and
`python -m bot sync`, which needs no handlers at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import discord
from discord import app_commands

from bot.slash_community import COMMUNITY_COMMANDS
from commands.generate import GenerateOptions
from commands.train import TrainOptions
from gpu_service.schemas import MAX_IMAGES_PER_REQUEST, MAX_SEED, MAX_TEXT

if TYPE_CHECKING:
    from bot.handlers import Handlers

Text = app_commands.Range[str, 1, MAX_TEXT]
Image = Optional[discord.Attachment]


def handlers_of(interaction: discord.Interaction) -> Handlers:
    return interaction.client.handlers  # type: ignore[attr-defined]  # set by QwertyBot


@app_commands.command(name="qwerty", description="Make pictures of the trained subject: <prefix> <subject> <postfix>")
@app_commands.describe(
    prompt_prefix="Words before the subject, e.g. 'a gorgeous painting of a'",
    prompt_postfix="Words after the subject, e.g. 'in a psychedelic 1970s style'",
    seed="Start from this seed for repeatable pictures (image i gets seed + i)",
    count=f"How many pictures (1-{MAX_IMAGES_PER_REQUEST})",
    negative_prompt="What the pictures should not show",
    steps="Denoising steps (1-100): more is slower and finer",
    guidance="How closely to follow the prompt (0-30)",
    subject="Which trained subject to draw",
)
@app_commands.guild_only()  # banned words, spoilers and the gallery are per server
async def qwerty(
    interaction: discord.Interaction,
    prompt_prefix: Text,
    prompt_postfix: app_commands.Range[str, 0, MAX_TEXT] = "",
    seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
    count: app_commands.Range[int, 1, MAX_IMAGES_PER_REQUEST] = 1,
    negative_prompt: app_commands.Range[str, 0, MAX_TEXT] = "",
    steps: app_commands.Range[int, 1, 100] | None = None,
    guidance: app_commands.Range[float, 0.0, 30.0] | None = None,
    subject: app_commands.Range[str, 1, 32] | None = None,
) -> None:
    options = GenerateOptions(
        prompt_prefix=prompt_prefix, prompt_postfix=prompt_postfix, seed=seed, count=count,
        negative_prompt=negative_prompt, steps=steps, guidance=guidance, subject=subject,
    )
    await handlers_of(interaction).qwerty(interaction, options)


@app_commands.command(name="train", description="Admins: teach the model a subject from 3-20 photos (links or attachments)")
@app_commands.describe(
    urls="Image links separated by spaces, or one link to a text file that lists them",
    image1="A photo of the subject", image2="Another photo", image3="Another photo", image4="Another photo",
    image5="Another photo", image6="Another photo", image7="Another photo", image8="Another photo",
    subject="Name of the subject to train (default: the server's subject)",
    instance_phrase="The words that name the subject in prompts, e.g. 'qwerty dog'",
    class_phrase="What kind of thing the subject is, e.g. 'dog'",
    steps="Training steps (default: the trainer's)",
)
@app_commands.default_permissions(administrator=True)  # a hint for Discord's UI; the check is at run time
@app_commands.guild_only()
async def train(
    interaction: discord.Interaction,
    urls: app_commands.Range[str, 0, 4000] = "",
    image1: Image = None, image2: Image = None, image3: Image = None, image4: Image = None,
    image5: Image = None, image6: Image = None, image7: Image = None, image8: Image = None,
    subject: app_commands.Range[str, 1, 32] | None = None,
    instance_phrase: app_commands.Range[str, 1, 200] | None = None,
    class_phrase: app_commands.Range[str, 1, 200] | None = None,
    steps: app_commands.Range[int, 1, 5000] | None = None,
) -> None:
    options = TrainOptions(
        subject=subject, instance_phrase=instance_phrase, class_phrase=class_phrase, steps=steps, urls=urls
    )
    attachments = [a for a in (image1, image2, image3, image4, image5, image6, image7, image8) if a]
    await handlers_of(interaction).train(interaction, options, attachments)


@qwerty.autocomplete("subject")
@train.autocomplete("subject")
async def subject_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return await handlers_of(interaction).subject_choices(current)


COMMANDS = (qwerty, train, *COMMUNITY_COMMANDS)


def add_commands(tree: app_commands.CommandTree) -> None:
    for command in COMMANDS:
        tree.add_command(command)
