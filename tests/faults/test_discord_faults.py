"""Discord answers 429 and 500 to the bot's follow-ups: the member still gets exactly one answer and the job
is recorded once. The loopback Discord answers the failures itself, with the headers Discord sends."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from tests.bot.conftest import TOKEN, bot, eventually, gpu  # noqa: F401 (fixtures)
from tests.support.discord_stub import DiscordStub
from tests.support.discord_stub.rest import RestApi

RATE_LIMITED = {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}


def refusal(status: int) -> web.Response:
    body = RATE_LIMITED if status == 429 else {"message": "500: Internal Server Error", "code": 0}
    headers = {"Content-Type": "application/json", "Via": "1.1 google"}
    if status == 429:
        headers |= {"Retry-After": "1", "X-RateLimit-Scope": "user"}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers)


@pytest.fixture
def refusals(monkeypatch) -> list[int]:
    """Statuses the next follow-ups get instead of being delivered, in order (then Discord recovers)."""
    planned: list[int] = []
    deliver = RestApi.followup

    async def followup(self, request: web.Request) -> web.StreamResponse:
        if planned:
            await request.read()
            return refusal(planned.pop(0))
        return await deliver(self, request)

    monkeypatch.setattr(RestApi, "followup", followup)
    return planned


@pytest.fixture
async def stub(refusals):
    async with DiscordStub(token=TOKEN, roles={"trainer": 0}) as running:
        yield running


def followups(interaction):
    return [sent for sent in interaction.responses if sent.kind == "followup"]


async def test_a_429_then_a_500_delay_the_images_but_they_arrive_once(bot, stub, refusals):  # noqa: F811
    refusals += [429, 500]
    interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a", "seed": 3})
    answer = await interaction.responses.wait_for(lambda sent: sent.kind == "followup", timeout=30)
    assert answer.files and "seed 3" in answer.content

    async def recorded():
        records = await bot.app.jobs.all()
        return records if records and records[0].message_id else None

    [record] = await eventually(recorded, timeout=10)
    assert (record.state, record.message_id) == ("done", answer.message_id)
    await asyncio.sleep(0.2)
    assert len(followups(interaction)) == 1


async def test_a_follow_up_refused_until_discord_gives_up_still_leaves_one_final_message(
    bot, stub, refusals,  # noqa: F811
):
    refusals += [429] * 5  # discord.py tries five times, then raises
    interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a", "seed": 3})
    final = await interaction.responses.wait_for(lambda sent: sent.kind in ("followup", "edit"), timeout=30)
    await asyncio.sleep(0.5)
    finals = [sent for sent in interaction.responses if sent.kind in ("followup", "edit")]
    assert len(finals) == 1, [(sent.kind, sent.payload.get("content")) for sent in finals]
    # The images could not be delivered: the "thinking…" message becomes a sentence with a reference.
    assert final.kind == "edit" and "something went wrong" in final.payload["content"]
    assert "reference `" in final.payload["content"]
    assert len(await bot.app.jobs.all()) == 1
