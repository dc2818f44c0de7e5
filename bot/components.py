"""The buttons and menus on the bot's messages, persistent across restarts.

Each is a `discord.ui.DynamicItem` whose custom id carries a job (or share) id and perhaps an image
index (bot/custom_ids.py); the bot registers the classes once (`add_dynamic_items`), so a
click on any message, however old, is routed by its custom id alone and the state is read from the
stores. No view is kept in memory per message.

    a generation:   [🎲 Reroll] [✏️ Edit] [🎨 Variations] [📌 Share] [🗑 Delete]
    a gallery post: [⭐ 3] [Remove]  (⭐ again takes the vote back; Remove: moderators only, checked on click)

With several images shown, Variations and Share answer with an ephemeral menu to pick one (same custom
id, as a select menu whose values are image indexes). Edit opens a form (`EditPrompt`, a modal whose
custom id names the job) prefilled from the job store; submitting it renders a new /qwerty. An open form
lives in memory only (discord.py keeps modals there), so one left open across a restart is forgotten.
Errors raised by a click or a submit go through the one handler (bot.errors.answer_error): discord.py
would only log them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import discord
from discord import ui

from bot import custom_ids
from bot.context import check_served
from bot.custom_ids import Action
from bot.errors import answer_error
from commands.actions import PromptParts
from gpu_service.schemas import MAX_TEXT

Item = ui.Button | ui.Select
EDIT_FORM_TIMEOUT_S = 30 * 60.0  # an open form is kept in memory this long; a restart forgets it


class ButtonActions(Protocol):
    """What a click does (bot.buttons.ButtonDesk); the bot holds one as `client.buttons`."""

    async def reroll(self, interaction: discord.Interaction, job_id: str) -> None: ...
    async def variations(self, interaction: discord.Interaction, job_id: str, index: int | None) -> None: ...
    async def share(self, interaction: discord.Interaction, job_id: str, index: int | None) -> None: ...
    async def edit(self, interaction: discord.Interaction, job_id: str) -> None: ...
    async def edited(self, interaction: discord.Interaction, job_id: str, parts: PromptParts) -> None: ...
    async def delete(self, interaction: discord.Interaction, job_id: str) -> None: ...
    async def vote(self, interaction: discord.Interaction, share_id: str) -> None: ...
    async def remove(self, interaction: discord.Interaction, share_id: str) -> None: ...


def desk_of(interaction: discord.Interaction) -> ButtonActions:
    return interaction.client.buttons  # type: ignore[attr-defined]  # set by QwertyBot


async def guarded(interaction: discord.Interaction, work: Awaitable[Any]) -> None:
    """Run a click's work; its failures reach the member through the central error handler."""
    try:
        await work
    except Exception as error:
        await answer_error(interaction, error)


def _index(match: re.Match[str]) -> int | None:
    index = match.groupdict().get("index")  # only Variations and Share ids carry one
    return None if index is None else int(index)


def picked(interaction: discord.Interaction) -> int | None:
    """The image index chosen in a select menu (None for a button, or a value we did not make)."""
    values = (interaction.data or {}).get("values") or []
    return custom_ids.parse_index(values[0]) if values else None


class _Dynamic(ui.DynamicItem[Item], template=r"(?!)"):
    """A dynamic item built from its custom id's parts; subclasses say what a click does."""

    def __init__(self, target: str, index: int | None = None, *, item: Item | None = None) -> None:
        super().__init__(item or self.make(target, index))
        self.target = target
        self.index = index

    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        raise NotImplementedError

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: Item, match: re.Match[str], /):
        return cls(match["target"], _index(match), item=item)  # the item as the message has it

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        allowed = getattr(interaction.client, "allowed_guilds", frozenset())  # set by QwertyBot
        return await check_served(interaction, allowed)

    async def callback(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, self.clicked(interaction))

    async def clicked(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError


class Reroll(_Dynamic, template=custom_ids.template(Action.REROLL)):
    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        return ui.Button(label="Reroll", emoji="🎲", style=discord.ButtonStyle.secondary,
                         custom_id=custom_ids.reroll(target))

    async def clicked(self, interaction: discord.Interaction) -> None:
        await desk_of(interaction).reroll(interaction, self.target)


class Variations(_Dynamic, template=custom_ids.template(Action.VARIATIONS)):
    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        return ui.Button(label="Variations", emoji="🎨", style=discord.ButtonStyle.secondary,
                         custom_id=custom_ids.variations(target, index))

    async def clicked(self, interaction: discord.Interaction) -> None:
        index = picked(interaction) if isinstance(self.item, ui.Select) else self.index
        await desk_of(interaction).variations(interaction, self.target, index)


class Edit(_Dynamic, template=custom_ids.template(Action.EDIT)):
    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        return ui.Button(label="Edit", emoji="✏️", style=discord.ButtonStyle.secondary,
                         custom_id=custom_ids.edit(target))

    async def clicked(self, interaction: discord.Interaction) -> None:
        await desk_of(interaction).edit(interaction, self.target)


class EditPrompt(ui.Modal):
    """The form Edit opens: the prompt's words, prefilled; submitting renders a new /qwerty."""

    def __init__(self, job_id: str, parts: PromptParts) -> None:
        super().__init__(title="Edit the prompt", custom_id=custom_ids.edit(job_id), timeout=EDIT_FORM_TIMEOUT_S)
        self.job_id = job_id
        self.prefix = _text_input("Words before the subject", parts.prompt_prefix, required=True)
        self.postfix = _text_input("Words after the subject", parts.prompt_postfix)
        self.negative = _text_input("What the pictures should not show", parts.negative_prompt,
                                    style=discord.TextStyle.paragraph)
        for field in (self.prefix, self.postfix, self.negative):
            self.add_item(field)

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await check_served(interaction, getattr(interaction.client, "allowed_guilds", frozenset()))

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        parts = PromptParts(self.prefix.value, self.postfix.value, self.negative.value)
        await guarded(interaction, desk_of(interaction).edited(interaction, self.job_id, parts))


def _text_input(label: str, value: str, *, required: bool = False,
                style: discord.TextStyle = discord.TextStyle.short) -> ui.TextInput:
    return ui.TextInput(label=label, default=value[:MAX_TEXT] or None, required=required, max_length=MAX_TEXT,
                        style=style)


class Share(_Dynamic, template=custom_ids.template(Action.SHARE)):
    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        return ui.Button(label="Share", emoji="📌", style=discord.ButtonStyle.primary,
                         custom_id=custom_ids.share(target, index))

    async def clicked(self, interaction: discord.Interaction) -> None:
        index = picked(interaction) if isinstance(self.item, ui.Select) else self.index
        await desk_of(interaction).share(interaction, self.target, index)


class Delete(_Dynamic, template=custom_ids.template(Action.DELETE)):
    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        return ui.Button(label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger,
                         custom_id=custom_ids.delete(target))

    async def clicked(self, interaction: discord.Interaction) -> None:
        await desk_of(interaction).delete(interaction, self.target)


class Vote(_Dynamic, template=custom_ids.template(Action.VOTE)):
    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        return vote_button(target, 0)

    async def clicked(self, interaction: discord.Interaction) -> None:
        await desk_of(interaction).vote(interaction, self.target)


class Remove(_Dynamic, template=custom_ids.template(Action.REMOVE)):
    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        return ui.Button(label="Remove", style=discord.ButtonStyle.secondary, custom_id=custom_ids.remove(target))

    async def clicked(self, interaction: discord.Interaction) -> None:
        await desk_of(interaction).remove(interaction, self.target)


class Cancel(_Dynamic, template=custom_ids.template(Action.CANCEL)):
    """On a request's progress message: the requester stops it, waiting or rendering (bot.delivery)."""

    @classmethod
    def make(cls, target: str, index: int | None) -> Item:
        return ui.Button(label="Cancel", emoji="✖️", style=discord.ButtonStyle.secondary,
                         custom_id=custom_ids.cancel(target))

    async def clicked(self, interaction: discord.Interaction) -> None:
        await interaction.client.delivery.cancel(interaction, self.target)  # type: ignore[attr-defined]


DYNAMIC_ITEMS = (Reroll, Variations, Edit, Share, Delete, Vote, Remove, Cancel)


def vote_button(share_id: str, votes: int) -> ui.Button:
    return ui.Button(label=str(votes), emoji="⭐", style=discord.ButtonStyle.secondary,
                     custom_id=custom_ids.vote(share_id))


def generation_view(job_id: str, shown: Sequence[int]) -> ui.View:
    """A generation's buttons. `shown`: indexes of the images in the message (none withheld): with
    one, Variations and Share act on it at once; with several, they ask which; with none, they are left out."""
    view = ui.View(timeout=None)
    view.add_item(Reroll(job_id))
    view.add_item(Edit(job_id))
    if shown:
        only = shown[0] if len(shown) == 1 else None
        view.add_item(Variations(job_id, only))
        view.add_item(Share(job_id, only))
    view.add_item(Delete(job_id))
    return view


def picker_view(action: Action, job_id: str, shown: Sequence[int], seeds: Sequence[int]) -> ui.View:
    """An ephemeral menu to pick one image for Variations or Share."""
    custom_id = custom_ids.ComponentId(action, job_id).encode()
    options = [discord.SelectOption(label=f"Image {index + 1}", value=str(index),
                                    description=f"seed {seeds[index]}" if seeds[index] >= 0 else None)
               for index in shown]
    verb = "vary" if action is Action.VARIATIONS else "share"
    select = ui.Select(custom_id=custom_id, placeholder=f"Which image to {verb}?", options=options)
    view = ui.View(timeout=None)
    view.add_item((Variations if action is Action.VARIATIONS else Share)(job_id, item=select))
    return view


def gallery_view(share_id: str, votes: int) -> ui.View:
    view = ui.View(timeout=None)
    view.add_item(Vote(share_id, item=vote_button(share_id, votes)))
    view.add_item(Remove(share_id))
    return view


def progress_view(job_id: str) -> ui.View:
    view = ui.View(timeout=None)
    view.add_item(Cancel(job_id))
    return view
