"""The buttons on a generation, independent of Discord: Reroll, Variations, Edit, Share, Delete (and the
gallery's Vote and Remove). The bot's buttons and the shell's `/reroll job:...` call the same methods.

A click carries only a job id (and an image index): everything else comes from the job store, so a
button on a message from before a restart works the same. Images come from the image store
(commands/images.py); when it no longer has one, from the front end's `fetch` (in Discord: the
generation message's own attachment).

Permission checks that need the front end's facts (the Manage Messages permission) take them as
arguments; the rules are commands/community/access.py's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from commands.community import CommunityService, ImageWithheld, Share, ShareDecision, VoteOutcome
from commands.community.access import DELETE_REFUSED, REMOVE_REFUSED, can_delete, can_remove_post
from commands.community.errors import CommunityError, ShareNotFound
from commands.community.store import message_link
from commands.context import RequestContext
from commands.generate import GenerateOptions
from commands.images import ImageStore
from commands.jobs import JobRecord, JobStore
from commands.permissions import NotAuthorized
from commands.qwerty import Admission, QwertyService

log = logging.getLogger(__name__)
# What a front end can do when the image store has no copy: (the job that made it, its row id) -> PNG.
ImageFetch = Callable[[JobRecord, str], Awaitable[bytes | None]]
# Posting a share in the gallery: (share, PNG) -> (channel id, message id) of the post.
Post = Callable[[Share, bytes], Awaitable[tuple[str, str]]]
Retract = Callable[[str, str], Awaitable[None]]
_REPEATED = ("prompt_prefix", "prompt_postfix", "subject", "negative_prompt", "count", "steps", "guidance",
             "aspect", "width", "height")


class GenerationGone(CommunityError):
    """The job a button names is unknown, unfinished, deleted, or not a generation."""


@dataclass(frozen=True)
class PromptParts:
    prompt_prefix: str
    prompt_postfix: str = ""
    negative_prompt: str = ""


@dataclass(frozen=True)
class StoredGeneration:
    """A finished generation as the job store keeps it: what a button needs, after any restart."""

    record: JobRecord
    row_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    withheld: frozenset[int]
    prompt: str
    subject: str
    version: int | None

    @classmethod
    def from_record(cls, record: JobRecord | None, job_id: str) -> StoredGeneration:
        if record is None or record.kind != "generate":
            raise GenerationGone(f"There is no generation `{job_id}` (any more).")
        if record.state != "done":
            raise GenerationGone(f"The generation `{job_id}` did not finish, so its images can't be used.")
        if record.result.get("deleted"):
            raise GenerationGone(f"The generation `{job_id}` was deleted.")
        result, request = record.result, record.request
        row_ids = tuple(result.get("row_ids", ()))
        seeds = tuple(result.get("seeds", ())) or tuple(-1 for _ in row_ids)  # records from before seeds were kept
        return cls(
            record, row_ids, seeds, frozenset(result.get("withheld", ())),
            result.get("prompt") or " ".join(p for p in (request.get("prompt_prefix"), request.get("prompt_postfix")) if p),
            result.get("subject") or request.get("subject", ""), result.get("version"),
        )

    @property
    def job_id(self) -> str:
        return self.record.job_id

    @property
    def requester(self) -> str:
        return self.record.user_id

    @property
    def visible(self) -> list[int]:
        """Indexes of the images that were shown (the safety checker's withheld ones never are)."""
        return [index for index in range(len(self.row_ids)) if index not in self.withheld]

    @property
    def link(self) -> str:
        """The generation message's address ("" when it has none, e.g. made in the shell)."""
        record = self.record
        if not (record.message_id and record.channel_id):
            return ""
        return message_link(record.guild_id or "@me", record.channel_id, record.message_id)

    def row_id(self, index: int) -> str:
        """The row id of image `index`; ImageWithheld for one the safety checker withheld."""
        if not 0 <= index < len(self.row_ids):
            raise CommunityError(f"The generation `{self.job_id}` has no image {index} "
                                 f"(it has {len(self.row_ids)}, numbered from 0).")
        if index in self.withheld:
            raise ImageWithheld()
        return self.row_ids[index]

    @property
    def prompt_parts(self) -> PromptParts:
        """What Edit offers to change: the words around the subject and the negative prompt."""
        request = self.record.request
        return PromptParts(request.get("prompt_prefix", ""), request.get("prompt_postfix") or "",
                           request.get("negative_prompt") or "")

    def options(self, **changes) -> GenerateOptions:
        """The same request with new seeds (and `changes`); the live version of the same subject."""
        request = self.record.request
        given = {name: request[name] for name in _REPEATED if request.get(name) is not None}
        return GenerateOptions(**{**given, **changes})


class ActionService:
    def __init__(
        self, jobs: JobStore, qwerty: QwertyService, community: CommunityService, images: ImageStore,
        *, strength: float = 0.6,
    ) -> None:
        self.jobs = jobs
        self.qwerty = qwerty
        self.community = community
        self.images = images
        self.strength = strength

    async def load(self, job_id: str) -> StoredGeneration:
        return StoredGeneration.from_record(await self.jobs.get(job_id), job_id)

    # Reroll and Variations: admitted like /qwerty (banned words, limits), before any ack

    def reroll(self, stored: StoredGeneration, context: RequestContext) -> Admission:
        """Same prompt, new seeds; a reroll of variations varies the same source image again."""
        source = stored.record.request.get("source_row_id", "")
        strength = stored.record.request.get("strength") if source else None
        return self.qwerty.admit(stored.options(strength=strength), context, source_row_id=source)

    def variations(self, stored: StoredGeneration, index: int, context: RequestContext) -> Admission:
        """Image-to-image from image `index`, same prompt and subject, new seeds."""
        row_id = stored.row_id(index)
        return self.qwerty.admit(stored.options(strength=self.strength), context, source_row_id=row_id)

    def edit(self, stored: StoredGeneration, parts: PromptParts, context: RequestContext) -> Admission:
        """A new /qwerty with the edited words; everything else as asked before, new seeds, no start image."""
        return self.qwerty.admit(stored.options(**vars(parts)), context)

    async def with_source_image(self, admission: Admission, fetch: ImageFetch | None = None) -> Admission:
        """After the ack: the start image of a Variations (or its reroll) put into the request."""
        if not admission.source_row_id:
            return admission
        return admission.with_init_image(await self.image(admission.source_row_id, fetch))

    async def image(self, row_id: str, fetch: ImageFetch | None = None) -> bytes:
        """An image's PNG: the image store's copy, else the front end's (the message it was sent in)."""
        png = await asyncio.to_thread(self.images.load, row_id)
        if png is None and fetch is not None:
            record = await self.jobs.get(row_id.rsplit("-", 1)[0])
            png = await fetch(record, row_id) if record is not None else None
        if png is None:
            raise CommunityError("That image is no longer available, so it can't be used.")
        return png

    # Share

    async def begin_share(self, stored: StoredGeneration, index: int, guild_id: str, shared_by: str) -> ShareDecision:
        """Claim image `index` for the guild's gallery (once); withheld images are refused."""
        row_id = stored.row_id(index)  # ImageWithheld for a withheld one
        return await self.community.begin_share(
            guild_id, row_id, shared_by, stored.requester, stored.prompt, stored.seeds[index], stored.subject,
            stored.version, source_link=stored.link,
        )

    async def post_share(
        self, decision: ShareDecision, post: Post, fetch: ImageFetch | None = None, retract: Retract | None = None,
    ) -> Share:
        """Post a claimed share and record where; on any failure the claim is dropped (Share works again)."""
        share = decision.share
        try:
            png = await self.image(share.row_id, fetch)
            channel_id, message_id = await post(share, png)
        except BaseException:
            await self.community.abandon_share(share.share_id)
            raise
        try:
            return await self.community.confirm_posted(share.share_id, channel_id, message_id)
        except ShareNotFound:
            if retract is not None:  # the claim was taken over meanwhile: leave no orphan post
                await retract(channel_id, message_id)
            raise

    # Delete

    def require_delete(self, stored: StoredGeneration, user_id: str, *, moderator: bool) -> None:
        if not can_delete(stored.requester, user_id, moderator):
            raise NotAuthorized(DELETE_REFUSED)

    async def deleted(self, stored: StoredGeneration, user_id: str) -> None:
        """The generation's message is gone: log it (W&B), drop its kept images, mark the job."""
        self.community.record_deletion(stored.record.guild_id, stored.row_ids, user_id)
        await asyncio.to_thread(self.images.delete, stored.row_ids)
        await self.jobs.update(stored.job_id, result={**stored.record.result, "deleted": True})

    # The gallery's buttons

    async def vote(self, guild_id: str, share_id: str, user_id: str) -> VoteOutcome:
        return await self.community.vote(guild_id, share_id, user_id)

    async def toggle_vote(self, guild_id: str, share_id: str, user_id: str) -> VoteOutcome:
        """A member's first ⭐ votes, the next takes the vote back (counted: whether they now vote)."""
        outcome = await self.community.vote(guild_id, share_id, user_id)
        if outcome.counted:
            return outcome
        taken_back = await self.community.unvote(guild_id, share_id, user_id)
        return VoteOutcome(False, taken_back.total)

    async def remove(self, guild_id: str, share_id: str, user_id: str, *, moderator: bool) -> Share:
        """A moderator takes a gallery post down (out of /top too); the front end deletes the message."""
        if not can_remove_post(moderator):
            raise NotAuthorized(REMOVE_REFUSED)
        return await self.community.remove_post(guild_id, share_id, user_id)
