"""The trained subjects, for autocomplete: cached for a few seconds, never slower than its time limit.

Autocomplete must answer within Discord's 3 s while the member types, so a slow backend yields the
last known list (or none) instead of an error. That list may be stale (a rollback or a training since),
so it never names the live version of a request: after a failed refresh `live_version` says None and the
GPU side resolves the live version itself. A failed refresh is tried again after the cache's time to live,
so a hanging backend delays at most one lookup per `ttl_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gpu_service.client import GpuClient
from gpu_service.schemas import ModelVersion
from gpu_service.subjects import GLOBAL, subject_key

log = logging.getLogger(__name__)
MAX_CHOICES = 25  # Discord shows at most 25 suggestions


class SubjectCatalog:
    def __init__(
        self, client: GpuClient, *, ttl_s: float = 10.0, timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._versions: list[ModelVersion] = []
        self._fetched_at: float | None = None
        self._current = False  # the list is what the backend said at the last refresh, nothing newer known
        self._invalidations = 0  # a refresh that began before an invalidation may list the old live version
        self._lock = asyncio.Lock()

    async def versions(self) -> list[ModelVersion]:
        """Every version of every subject, from cache when fresh."""
        async with self._lock:
            if self._fetched_at is None or self.clock() - self._fetched_at >= self.ttl_s:
                await self._refresh()
            return self._versions

    async def matching(self, typed: str, guild_id: str) -> list[ModelVersion]:
        """The live version of each subject a server sees (the global ones and its own, its own shadowing a
        global one of the same name) whose name or phrase contains what was typed."""
        typed = typed.strip().lower()
        live: dict[str, ModelVersion] = {}
        for version in await self.versions():
            if version.owner in (GLOBAL, guild_id) and (version.active or version.subject not in live):
                live[version.subject] = version
        own = {v.name for v in live.values() if v.owner}
        found = [v for v in live.values() if (v.owner or v.name not in own)
                 and (typed in v.name or typed in v.instance_phrase.lower())]
        return sorted(found, key=lambda v: (not v.name.startswith(typed), v.name))[:MAX_CHOICES]

    async def resolve(self, name: str, guild_id: str) -> str:
        """The subject key `name` means in a server: the server's own subject when it has one, else the global."""
        own = subject_key(name, guild_id)
        if guild_id and any(version.subject == own for version in await self.versions()):
            return own
        return name

    async def live_version(self, subject: str) -> int | None:
        """The version number the bot knows is live for `subject` (cached like `versions`); None when
        the subject has none or the list could not be refreshed in time."""
        versions = await self.versions()
        if not self._current:
            return None
        return next((v.version for v in versions if v.subject == subject and v.active), None)

    async def phrases(self, subject: str) -> tuple[str, str] | None:
        """The instance and class phrases of a subject's live (else newest) version, fresh.

        Asked of the backend directly, without autocomplete's time limit: a training must not fall back
        to default phrases just because the backend was slow to answer.
        """
        self.invalidate()
        versions = await self.client.list_versions(subject)
        if not versions:
            return None
        chosen = next((v for v in versions if v.active), versions[-1])
        return chosen.instance_phrase, chosen.class_phrase

    def invalidate(self) -> None:
        """After a training or a rollback: the next lookup asks the backend; until it answers, the cached
        list serves autocomplete only."""
        self._fetched_at = None
        self._current = False
        self._invalidations += 1

    async def _refresh(self) -> None:
        began = self._invalidations
        try:
            async with asyncio.timeout(self.timeout_s):
                self._versions = await self.client.list_versions()
        except Exception as error:
            self._current = False
            log.warning("listing subjects failed (%s); autocomplete shows the last known list and requests "
                        "leave the live version to the GPU side", error.__class__.__name__)
        else:
            self._current = began == self._invalidations
        if began == self._invalidations:
            self._fetched_at = self.clock()
