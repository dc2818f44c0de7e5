"""Subjects for autocomplete: cached briefly, filtered by what was typed, never an error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from commands.subjects import SubjectCatalog
from gpu_service.schemas import ModelVersion

GUILD = "700"


def version(subject, number, phrase, active):
    return ModelVersion(subject=subject, version=number, instance_phrase=phrase, class_phrase="dog",
                        base_model="m", created_at=datetime.now(UTC), active=active)


class Versions:
    def __init__(self, versions, delay=0.0):
        self.versions, self.delay, self.calls = versions, delay, 0

    async def list_versions(self, subject=None):
        self.calls += 1
        await asyncio.sleep(self.delay)
        return list(self.versions)


async def test_matching_shows_each_subjects_live_version_filtered_by_what_was_typed():
    client = Versions([version("qwerty", 1, "qwerty dog", False), version("qwerty", 2, "qwerty dog", True),
                       version("cat", 1, "sks cat", True), version("dot", 1, "dot dog", True)])
    catalog = SubjectCatalog(client)
    assert [(v.subject, v.version) for v in await catalog.matching("", GUILD)] == [
        ("cat", 1), ("dot", 1), ("qwerty", 2)]
    assert [v.subject for v in await catalog.matching("Do", GUILD)] == ["dot", "qwerty"]  # name first, then phrase
    assert [v.subject for v in await catalog.matching("sks", GUILD)] == ["cat"]


async def test_lookups_are_cached_until_the_ttl_or_an_invalidation():
    now = [0.0]
    client = Versions([version("qwerty", 1, "qwerty dog", True)])
    catalog = SubjectCatalog(client, ttl_s=10, clock=lambda: now[0])
    await catalog.matching("", GUILD)
    await catalog.matching("q", GUILD)
    assert client.calls == 1
    now[0] = 11
    await catalog.matching("", GUILD)
    catalog.invalidate()
    await catalog.matching("", GUILD)
    assert client.calls == 3


async def test_a_slow_backend_yields_the_last_known_list_in_time():
    client = Versions([version("qwerty", 1, "qwerty dog", True)])
    catalog = SubjectCatalog(client, ttl_s=0, timeout_s=0.05)
    assert len(await catalog.matching("", GUILD)) == 1
    client.delay = 1.0
    assert [v.subject for v in await asyncio.wait_for(catalog.matching("", GUILD), 0.5)] == ["qwerty"]


async def test_a_server_sees_the_global_subjects_and_its_own_which_shadow_the_global_ones():
    client = Versions([version("qwerty", 1, "qwerty dog", True), version("qwerty@700", 1, "qwerty dog", True),
                       version("rex@800", 1, "sks dog", True), version("cat@700", 1, "sks cat", True)])
    catalog = SubjectCatalog(client)
    assert [v.subject for v in await catalog.matching("", "700")] == ["cat@700", "qwerty@700"]
    assert [v.name for v in await catalog.matching("", "800")] == ["qwerty", "rex"]
    assert [v.subject for v in await catalog.matching("", "900")] == ["qwerty"]
    assert (await catalog.resolve("qwerty", "700"), await catalog.resolve("qwerty", "800")) == ("qwerty@700", "qwerty")
    assert await catalog.resolve("rex", "700") == "rex"  # another server's: not this one's, so the global name
