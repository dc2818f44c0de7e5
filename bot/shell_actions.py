"""The buttons and the gallery/admin commands in the terminal shell, by job and image id.

    /reroll job:ID            /variations job:ID image:N     /share job:ID image:N     /delete job:ID
    /vote share:ID   /remove share:ID   /top [period:day|week|all]   /banned action:add|remove|list [words:...]
    /models   /rollback subject:NAME [version:N]   /export subject:NAME version:N [format:kohya]   /status
    /settings [subject:NAME] [steps:N] [spoiler:on|off] [gallery:on|off]   (no options: show them)

Thin over commands/ (actions, admin, community), as the Discord buttons are. The shell is its own server
(guild id ""): its gallery is the folder OUTPUTS_DIR/gallery, where Share copies the image, and the
share is recorded in the community store like any other (so /top and /vote work). The shell's user is
an admin and a moderator. An image id is the index in the row id and file name (`<job>-<N>.png`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.render import plain
from bot.shell_delivery import Say, ShellDelivery
from bot.shell_parse import ShellCommand
from bot.wiring import AppServices
from commands.admin import models_text, rollback_text, status_text
from commands.community import Share
from commands.community.errors import CommunityError
from commands.community.moderation import parse_word_list
from commands.community.settings import SettingsChange, change_settings, settings_text
from commands.context import RequestContext
from commands.export import export_lora
from commands.permissions import Caller

OPERATOR = Caller.local_operator()  # the shell is the deployment's own tool
GUILD = ""  # the shell's own community
GALLERY = "shell"  # its gallery "channel": a folder under OUTPUTS_DIR


class ShellActions:
    def __init__(
        self, app: AppServices, context: RequestContext, outputs_dir: Path, delivery: ShellDelivery, say: Say
    ) -> None:
        self.app = app
        self.actions = app.actions
        self.community = app.community
        self.context = context
        self.user = context.user_id
        self.outputs_dir = outputs_dir
        self.gallery_dir = outputs_dir / "gallery"
        self.delivery = delivery
        self._say = say

    def say(self, text: str) -> None:
        self._say(plain(text))

    async def run(self, command: ShellCommand) -> None:
        await getattr(self, f"do_{command.name}")(command.options)

    async def do_reroll(self, options: dict[str, Any]) -> None:
        stored = await self.actions.load(options["job"])
        admission = await self.actions.with_source_image(self.actions.reroll(stored, self.context))
        await self.delivery.deliver(admission)

    async def do_variations(self, options: dict[str, Any]) -> None:
        stored = await self.actions.load(options["job"])
        index = options.get("image", stored.visible[0] if stored.visible else 0)
        admission = self.actions.variations(stored, index, self.context)
        await self.delivery.deliver(await self.actions.with_source_image(admission))

    async def do_share(self, options: dict[str, Any]) -> None:
        stored = await self.actions.load(options["job"])
        if await self.community.gallery_channel(GUILD) is None:
            await self.community.set_gallery_channel(GUILD, GALLERY)
        index = options.get("image", stored.visible[0] if stored.visible else 0)
        decision = await self.actions.begin_share(stored, index, GUILD, self.user)
        if not decision.should_post:
            where = self.gallery_dir / f"{decision.share.row_id}.png"
            self.say(f"already in the gallery: {where} (share {decision.share.share_id})"
                     if decision.kind == "already_shared" else decision.message)
            return
        share = await self.actions.post_share(decision, self._copy_to_gallery)
        self.say(f"shared {share.row_id} to the gallery: {self.gallery_dir / f'{share.row_id}.png'} "
                 f"(share {share.share_id})")

    async def _copy_to_gallery(self, share: Share, png: bytes) -> tuple[str, str]:
        self.gallery_dir.mkdir(parents=True, exist_ok=True)
        (self.gallery_dir / f"{share.row_id}.png").write_bytes(png)
        return GALLERY, share.share_id  # the share id stands for the message id

    async def do_delete(self, options: dict[str, Any]) -> None:
        stored = await self.actions.load(options["job"])
        self.actions.require_delete(stored, self.user, moderator=True)
        outputs = self.outputs_dir
        for row_id in stored.row_ids:
            for suffix in (".png", ".json"):
                (outputs / f"{row_id}{suffix}").unlink(missing_ok=True)
        await self.actions.deleted(stored, self.user)
        self.say(f"deleted job {stored.job_id} ({len(stored.row_ids)} image(s))")

    async def do_vote(self, options: dict[str, Any]) -> None:
        outcome = await self.actions.toggle_vote(GUILD, options["share"], self.user)  # as the ⭐ button does
        self.say(f"{'voted' if outcome.counted else 'vote taken back'}: {outcome.total} vote(s)")

    async def do_remove(self, options: dict[str, Any]) -> None:
        share = await self.actions.remove(GUILD, options["share"], self.user, moderator=True)
        (self.gallery_dir / f"{share.row_id}.png").unlink(missing_ok=True)
        self.say(f"removed share {share.share_id} ({share.row_id}) from the gallery and from /top")

    async def do_top(self, options: dict[str, Any]) -> None:
        period = options.get("period", "week")
        entries = await self.community.top(GUILD, period)
        if not entries:
            self.say(f"no images shared ({period}) yet")
        for rank, entry in enumerate(entries, start=1):
            self.say(f"{rank}. {entry.votes} vote(s) · {entry.prompt} · {entry.row_id} (share {entry.share_id})")

    async def do_banned(self, options: dict[str, Any]) -> None:
        action, words = options["action"], parse_word_list(options.get("words", ""))
        if action == "add":
            added = await self.community.add_banned_words(GUILD, words, by=self.user)
            self.say(f"banned: {', '.join(added) or 'nothing new'}")
        elif action == "remove":
            removed = await self.community.remove_banned_words(GUILD, words)
            self.say(f"no longer banned: {', '.join(removed) or 'nothing'}")
        elif action == "list":
            self.say(f"banned words: {', '.join(self.community.banned_words(GUILD)) or 'none'}")
        else:
            raise CommunityError(f"`action` must be add, remove or list, not {action!r}.")

    async def do_settings(self, options: dict[str, Any]) -> None:
        change = SettingsChange(options.get("subject"), options.get("steps"), _switch(options, "spoiler"),
                                gallery_enabled=_switch(options, "gallery"))
        global_subject = self.app.settings.DEFAULT_SUBJECT
        if change:
            settings = await change_settings(self.community, self.app.subjects, GUILD, change,
                                             global_subject=global_subject)
        else:
            settings = await self.community.server_settings(GUILD)
        self.say(settings_text(settings, global_subject))

    async def do_models(self, options: dict[str, Any]) -> None:
        self.say(models_text(await self.app.admin.models(OPERATOR)))

    async def do_rollback(self, options: dict[str, Any]) -> None:
        rollback = await self.app.admin.rollback(OPERATOR, options["subject"].lower(), options.get("version"))
        self.say(rollback_text(rollback))

    async def do_export(self, options: dict[str, Any]) -> None:
        fmt = options.get("format", "diffusers")
        exported = await export_lora(self.app.gpu, self.app.admins, OPERATOR, options["subject"].lower(),
                                     options["version"], fmt, catalog=self.app.subjects)
        path = self.outputs_dir / exported.filename
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(exported.data)
        self.say(f"wrote {path} ({fmt} format, {len(exported.data)} bytes)")

    async def do_status(self, options: dict[str, Any]) -> None:
        self.say(status_text(await self.app.admin.status()))


def _switch(options: dict[str, Any], name: str) -> bool | None:
    """An on|off option as a bool; None when it was not given."""
    value = options.get(name)
    if value is None:
        return None
    if value.lower() not in ("on", "off"):
        raise CommunityError(f"`{name}` must be on or off, not {value[:20]!r}.")
    return value.lower() == "on"
