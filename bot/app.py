"""The Discord client: receives its dependencies, owns its background work, syncs commands only when told.

    bot = QwertyBot(settings=settings, app=make_app_services(settings))
    async with bot:
        await bot.start(token)

Commands are synced at start only to DISCORD_GUILD_ID (development); globally only by
`python -m bot sync` (Discord allows 200 command creates a day per guild). At start the bot logs its
invite link, and warns when no command is registered anywhere (members would see none).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from bot.buttons import ButtonDesk
from bot.components import DYNAMIC_ITEMS
from bot.context import check_served
from bot.delivery import GenerationDelivery
from bot.errors import answer_error
from bot.handlers import Handlers
from bot.settings import BotSettings
from bot.slash import add_commands
from bot.tasks import TaskOwner
from bot.wiring import AppServices
from commands.jobs import JobRecord
from commands.recovery import interrupted_text, recover

log = logging.getLogger(__name__)
PRUNE_INTERVAL_S = 6 * 3600.0  # kept images older than IMAGE_RETENTION_DAYS go at start, then this often
# What the bot does in a channel: answer, post images, show embeds, fetch an image back from its message.
INVITE_PERMISSIONS = discord.Permissions(
    send_messages=True, attach_files=True, embed_links=True, read_message_history=True
)
NOT_REGISTERED = ("no slash commands are registered with Discord, so members see none: run `make sync` "
                  "(`python -m bot sync`) once, and again whenever the commands change")


def intents() -> discord.Intents:
    # Guilds only: roles and channels for interactions. No message content, no members, no presences.
    chosen = discord.Intents.none()
    chosen.guilds = True
    return chosen


class ServedTree(app_commands.CommandTree):
    """The command tree, answering only in the servers ALLOWED_GUILD_IDS lists (all, when it is empty)."""

    def __init__(self, client: discord.Client, allowed: frozenset[int]) -> None:
        super().__init__(client)
        self.allowed = allowed

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await check_served(interaction, self.allowed)


class QwertyBot(discord.Client):
    def __init__(
        self, *, settings: BotSettings, app: AppServices, guild_ready_timeout: float = 2.0,
        warm_up: Callable[[], Awaitable[None]] | None = None, prune_interval_s: float = PRUNE_INTERVAL_S,
    ) -> None:
        super().__init__(
            intents=intents(), guild_ready_timeout=guild_ready_timeout,
            allowed_mentions=discord.AllowedMentions.none(),  # a prompt with @everyone pings nobody
        )
        self.settings = settings
        self.app = app
        self.warm_up = warm_up
        self.prune_interval_s = prune_interval_s
        self.tasks = TaskOwner()
        self.allowed_guilds = settings.ALLOWED_GUILD_IDS  # read by the buttons too (bot/components.py)
        self.tree = ServedTree(self, self.allowed_guilds)
        add_commands(self.tree)
        self.tree.error(answer_error)
        # /qwerty, Reroll and Variations answer through one delivery; slash commands and clicks are
        # routed to these two (bot.slash, bot.components).
        delivery = GenerationDelivery(app.qwerty, app.community, self.tasks,
                                      progress_interval_s=settings.PROGRESS_INTERVAL_S)
        self.delivery = delivery  # the Cancel button's (bot.components.Cancel)
        self.handlers = Handlers(app, settings, self.tasks, self, delivery)
        self.buttons = ButtonDesk(app, delivery, self)

    async def setup_hook(self) -> None:
        """After login, before the gateway: the persistent buttons, dev-guild sync, then recovery, image
        pruning (now and on a schedule) and warm-up in the background."""
        self.add_dynamic_items(*DYNAMIC_ITEMS)  # clicks on any message, from any earlier run
        if self.settings.DISCORD_GUILD_ID:
            await sync_to(self.tree, self.settings.DISCORD_GUILD_ID)
        self.tasks.spawn(self.recover(), name="recover-jobs")
        self.tasks.spawn(self.first_run_guidance(), name="first-run-guidance")
        if self.settings.IMAGE_RETENTION_DAYS:
            max_age_s = self.settings.IMAGE_RETENTION_DAYS * 86400
            self.tasks.spawn(self._prune_images(max_age_s), name="prune-images")
        if self.warm_up is not None:
            self.tasks.spawn(self._warm(self.warm_up), name="warm-gpu")

    async def on_ready(self) -> None:
        log.info("ready: logged in as %s (%s) in %d guild(s)", self.user, self.user.id if self.user else "?",
                 len(self.guilds))

    async def first_run_guidance(self) -> None:
        """The invite link, and a warning with the fix when Discord knows none of our commands."""
        if self.application_id is not None:
            log.info("invite the bot to a server with %s", invite_url(self.application_id))
        try:
            registered = await registered_commands(self.tree, self.settings.DISCORD_GUILD_ID)
        except discord.HTTPException:
            log.warning("could not ask Discord which commands are registered", exc_info=True)
            return
        if registered:
            log.info("%d command(s) registered with Discord", registered)
        else:
            log.warning(NOT_REGISTERED)

    async def recover(self) -> None:
        """Jobs the last run left unfinished: trainings resumed, generations reported in their channel."""
        await recover(self.app.jobs, "discord", report=self._report_interrupted, resume=self._resume)

    def _resume(self, record: JobRecord) -> None:
        self.tasks.spawn(self.handlers.training.resume(record), name=f"resume-{record.job_id}")

    async def _report_interrupted(self, record: JobRecord) -> None:
        if not record.channel_id:
            log.warning("job %s was interrupted and has no channel to report in", record.job_id)
            return
        channel = self.get_partial_messageable(int(record.channel_id))
        mention = f"<@{record.user_id}> " if record.user_id.isdigit() else ""
        only_them = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(int(record.user_id))]) \
            if mention else discord.AllowedMentions.none()
        await channel.send(mention + interrupted_text(record), allowed_mentions=only_them)

    async def _prune_images(self, max_age_s: float) -> None:
        """Until the bot closes: a bot that runs for months must not keep every image it ever drew."""
        while True:
            try:
                removed = await asyncio.to_thread(self.app.images.prune, max_age_s)
                if removed:
                    log.info("pruned %d kept image(s) older than %g day(s)", removed, max_age_s / 86400)
            except OSError:
                log.exception("pruning kept images failed; trying again in %g s", self.prune_interval_s)
            await asyncio.sleep(self.prune_interval_s)

    async def _warm(self, warm_up: Callable[[], Awaitable[None]]) -> None:
        try:
            await warm_up()
            log.info("the GPU client is warm")
        except Exception:
            log.exception("warming the GPU client failed; requests will try again")

    async def close(self) -> None:
        await self.tasks.close()
        await super().close()


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(
        application_id, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands")
    )


async def registered_commands(tree: app_commands.CommandTree, guild_id: int | None) -> int:
    """How many commands Discord has for us: global ones, and the development guild's when it is set."""
    count = len(await tree.fetch_commands())
    if guild_id:
        count += len(await tree.fetch_commands(guild=discord.Object(guild_id)))
    return count


async def sync_to(tree: app_commands.CommandTree, guild_id: int | None) -> list[app_commands.AppCommand]:
    """One bulk overwrite of the commands: to a guild (instant, for development) or global."""
    if guild_id is None:
        synced = await tree.sync()
    else:
        guild = discord.Object(guild_id)
        tree.copy_global_to(guild=guild)
        synced = await tree.sync(guild=guild)
    log.info("synced %d command(s) to %s", len(synced), f"guild {guild_id}" if guild_id else "all guilds")
    return synced


async def sync_commands(settings: BotSettings) -> list[str]:
    """`python -m bot sync`: log in over REST only, sync, log out. Builds no GPU client."""
    client = discord.Client(intents=intents())
    tree = app_commands.CommandTree(client)
    add_commands(tree)
    async with client:
        await client.login(settings.discord_token())
        synced = await sync_to(tree, settings.DISCORD_GUILD_ID)
    return [command.name for command in synced]
