"""What each slash command does in Discord: check, defer, call commands/, render. Nothing more.

/qwerty is here (answered by bot.delivery, which Reroll and Variations share); /train is bot.training,
the gallery and admin commands bot.admin. Errors are not caught here: they reach the tree's one handler
(bot.errors.answer_error).
"""

from __future__ import annotations

import discord
from discord import app_commands

from bot import render
from bot.admin import AdminDesk
from bot.context import caller_of, request_context
from bot.delivery import GenerationDelivery
from bot.settings import BotSettings
from bot.tasks import TaskOwner
from bot.training import TrainingDesk
from bot.wiring import AppServices
from commands.generate import GenerateOptions
from commands.train import TrainOptions


class Handlers:
    def __init__(
        self, app: AppServices, settings: BotSettings, tasks: TaskOwner, client: discord.Client,
        delivery: GenerationDelivery,
    ) -> None:
        self.app = app
        self.delivery = delivery
        self.training = TrainingDesk(app, settings, tasks, client, app.admins)
        self.admin = AdminDesk(app, app.admins)

    async def qwerty(self, interaction: discord.Interaction, options: GenerateOptions) -> None:
        """/qwerty: a place in the queue (or a refusal), the ack, progress, then one message with the images."""
        admission = self.app.qwerty.admit(options, request_context(interaction))
        await self.delivery.deliver(interaction, admission)

    async def train(
        self, interaction: discord.Interaction, options: TrainOptions, attachments: list[discord.Attachment]
    ) -> None:
        await self.training.train(interaction, options, attachments, request_context(interaction),
                                  caller_of(interaction))

    async def subject_choices(self, interaction: discord.Interaction, typed: str) -> list[app_commands.Choice[str]]:
        """The subjects this server sees: the global ones and its own."""
        versions = await self.app.subjects.matching(typed, str(interaction.guild_id or ""))
        return [
            app_commands.Choice(name=render.clip(f"{v.name}: {v.instance_phrase} (v{v.version})", 100), value=v.name)
            for v in versions
        ]
