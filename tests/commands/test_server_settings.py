"""Per-server settings: stored per guild (a file from before them upgraded in place), checked before they are
written, applied by /qwerty to the options a member leaves empty in that server only, and the gallery off."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.community import CommunityService, CommunityStore, GalleryNotSet
from commands.community.errors import CommunityError
from commands.community.settings import ServerSettings, SettingsChange, change_settings
from commands.community.store import MIGRATIONS
from commands.context import RequestContext
from commands.generate import GenerateOptions
from commands.sqlite_file import open_database
from gpu_service.errors import InvalidRequest
from gpu_service.schemas import ModelVersion
from tests.support.sleepy_gpu import SleepyGpu

HOME, OTHER = "700", "800"


def member_in(guild_id: str) -> RequestContext:
    return RequestContext(front_end="discord", user_id="42", guild_id=guild_id)


def trained(subject: str) -> ModelVersion:
    return ModelVersion(subject=subject, version=1, instance_phrase="sks dog", class_phrase="dog", base_model="m",
                        created_at=datetime.now(UTC), active=True)


@pytest.fixture
async def app(tmp_path):
    gpu = SleepyGpu()
    gpu.versions = [trained(f"rex@{HOME}"), trained(f"fido@{OTHER}"), trained("cat")]
    services = make_app_services(BotSettings(_env_file=None, DATA_DIR=tmp_path / "data", WANDB_MODE="disabled"), gpu)
    yield services
    await services.close()


async def change(services, guild_id: str, **values) -> ServerSettings:
    return await change_settings(services.community, services.subjects, guild_id, SettingsChange(**values),
                                 global_subject="qwerty")


def test_a_file_from_before_server_settings_keeps_its_gallery_and_spoiler(tmp_path):
    path = tmp_path / "community.sqlite3"
    old = open_database(path, MIGRATIONS[:1])
    old.execute("INSERT INTO guild_settings (guild_id, gallery_channel_id, spoiler) VALUES ('7', '99', 1)")
    old.close()
    with CommunityStore(path) as store:
        assert store.server_settings("7") == ServerSettings(gallery_channel_id="99", spoiler=True)
        assert store.server_settings("8") == ServerSettings()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 2


async def test_settings_are_kept_per_server_and_survive_a_restart(app):
    done = await change(app, HOME, default_subject=" Rex ", default_steps=40, spoiler=True, gallery_enabled=False)
    assert done == ServerSettings(spoiler=True, default_subject="rex", default_steps=40, gallery_enabled=False)
    await change(app, HOME, default_steps=12, gallery_channel_id="55")  # the rest is left as it was
    expected = ServerSettings("55", True, "rex", 12, False)
    assert await app.community.server_settings(HOME) == expected
    assert app.community.defaults_for(HOME) == {"subject": "rex", "steps": 12}
    assert await app.community.server_settings(OTHER) == ServerSettings() and app.community.defaults_for(OTHER) == {}
    with CommunityStore(app.community.store.path) as store:  # the next start reads them back
        restarted = CommunityService(store, app.generation_log)
        assert restarted.defaults_for(HOME) == {"subject": "rex", "steps": 12}
        assert await restarted.server_settings(HOME) == expected


@pytest.mark.parametrize(("values", "refusal"), [
    ({"default_steps": 0}, "`steps`"),
    ({"default_steps": 101}, "`steps`"),
    ({"default_subject": "nobody"}, "no subject `nobody`"),
    ({"default_subject": "fido"}, "no subject `fido`"),  # another server's own
    ({"default_subject": f"rex@{HOME}"}, "may use a-z"),  # a key, not a name
])
async def test_a_bad_default_is_refused_and_nothing_is_stored(app, values, refusal):
    with pytest.raises(InvalidRequest, match=refusal):
        await change(app, HOME, **values)
    assert await app.community.server_settings(HOME) == ServerSettings() and app.community.defaults_for(HOME) == {}


@pytest.mark.parametrize("subject", ["rex", "cat", "qwerty"])  # its own, a global one, the bot's default
async def test_a_subject_the_server_sees_can_be_its_default(app, subject):
    assert (await change(app, HOME, default_subject=subject)).default_subject == subject


async def test_qwerty_fills_in_the_servers_defaults_only_where_the_member_left_options_empty(app):
    await change(app, HOME, default_subject="rex", default_steps=40)
    home = app.qwerty.admit(GenerateOptions(prompt_prefix="a"), member_in(HOME))
    assert (home.request.subject, home.request.steps) == ("rex", 40)
    chosen = app.qwerty.admit(GenerateOptions(prompt_prefix="a", subject="cat", steps=5), member_in(HOME))
    assert (chosen.request.subject, chosen.request.steps) == ("cat", 5)
    elsewhere = app.qwerty.admit(GenerateOptions(prompt_prefix="a"), member_in(OTHER))
    assert (elsewhere.request.subject, elsewhere.request.steps) == ("qwerty", 25)
    generation = await app.qwerty.run(home)
    assert generation.request.subject == f"rex@{HOME}"  # the name resolved in that server


async def test_with_the_gallery_off_share_is_refused_until_it_is_on_again(app):
    await change(app, HOME, gallery_channel_id="55", gallery_enabled=False)
    share = dict(guild_id=HOME, row_id="job-0", shared_by="1", creator_id="1", prompt="a", seed=1, subject="qwerty",
                 version=None)
    with pytest.raises(GalleryNotSet, match="gallery off"):
        await app.community.begin_share(**share)
    await change(app, HOME, gallery_enabled=True)
    assert (await app.community.begin_share(**share)).should_post


async def test_an_empty_change_is_falsy_and_the_store_refuses_unknown_settings(app):
    assert not SettingsChange() and SettingsChange(spoiler=False)
    with pytest.raises(ValueError, match="unknown"):
        app.community.store.update_settings(HOME, {"guild_id": "x"})
    with pytest.raises(CommunityError):
        await change(app, HOME, default_subject="")
