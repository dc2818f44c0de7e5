"""The slash commands as Discord shows them: names, descriptions, options, limits.

The callbacks only turn options into the commands/ layer's option objects and hand them to the bot's
handlers (`interaction.client.handlers`; the "Vary this image" message menu to its buttons desk, like
the Variations button; /help to bot.help), so the same definitions serve the running bot and
`python -m bot sync`, which needs no handlers at all. The option descriptions and bounds come from the
request models (bot/options.py); tests/bot/test_shell_parse.py checks that these signatures match them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import discord
from discord import app_commands

from bot.help import answer_help
from bot.options import QWERTY_OPTIONS, TRAIN_OPTIONS, descriptions
from bot.slash_community import COMMUNITY_COMMANDS
from commands.generate import GenerateOptions
from commands.train import TrainOptions
from gpu_service.schemas import MAX_IMAGES_PER_REQUEST, MAX_SEED, MAX_TEXT, Aspect

if TYPE_CHECKING:
    from bot.buttons import ButtonDesk
    from bot.handlers import Handlers
    from bot.wiring import AppServices

Text = app_commands.Range[str, 1, MAX_TEXT]
Image = Optional[discord.Attachment]


def handlers_of(interaction: discord.Interaction) -> Handlers:
    return interaction.client.handlers  # type: ignore[attr-defined]  # set by QwertyBot


@app_commands.command(name="qwerty", description="Make pictures of the trained subject: <prefix> <subject> <postfix>")
@app_commands.describe(**descriptions(QWERTY_OPTIONS))
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
    aspect: Aspect | None = None,
) -> None:
    options = GenerateOptions(
        prompt_prefix=prompt_prefix, prompt_postfix=prompt_postfix, seed=seed, count=count,
        negative_prompt=negative_prompt, steps=steps, guidance=guidance, subject=subject, aspect=aspect,
    )
    await handlers_of(interaction).qwerty(interaction, options)


@app_commands.command(name="train", description="Admins: teach the model a subject from 3-20 photos (links or attachments)")
@app_commands.describe(**descriptions(TRAIN_OPTIONS))
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
    return await handlers_of(interaction).subject_choices(interaction, current)


@app_commands.command(name="help", description="What each command does, this server's subjects, example prompts")
@app_commands.guild_only()
async def help_command(interaction: discord.Interaction) -> None:
    app: AppServices = interaction.client.app  # type: ignore[attr-defined]  # set by QwertyBot
    await answer_help(interaction, app.subjects, COMMANDS)


async def vary_this_image(interaction: discord.Interaction, message: discord.Message) -> None:
    desk: ButtonDesk = interaction.client.buttons  # type: ignore[attr-defined]  # set by QwertyBot
    await desk.vary_message(interaction, message)


VARY_MENU = app_commands.guild_only()(app_commands.ContextMenu(name="Vary this image", callback=vary_this_image))
COMMANDS = (qwerty, train, *COMMUNITY_COMMANDS, help_command)
MENUS = (VARY_MENU,)


def add_commands(tree: app_commands.CommandTree) -> None:
    for command in (*COMMANDS, *MENUS):
        tree.add_command(command)
