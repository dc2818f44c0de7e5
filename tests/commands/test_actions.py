"""The buttons' use cases without Discord: everything from the job store, images from the store or the
front end's fallback, banned words and withheld images refused, versions pinned to the live one."""

from __future__ import annotations

import pytest

from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.actions import GenerationGone
from commands.community import ImageWithheld
from commands.community.errors import BannedWordError, CommunityError
from commands.context import RequestContext
from commands.generate import GenerateOptions
from commands.images import ImageStore
from commands.permissions import NotAuthorized
from gpu_service.schemas import GeneratedImage, ImageSource, TrainRequest
from tests.support.sleepy_gpu import SleepyGpu
from commands.permissions import Caller

OPERATOR = Caller.local_operator()

ANA = RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7", channel_id="8")
BO = RequestContext(front_end="discord", user_id="43", user_name="bo", guild_id="7", channel_id="8")


class HalfFlagged(SleepyGpu):
    """Withholds image 1 of every request."""

    def _result(self, request):
        result = super()._result(request)
        images = tuple(GeneratedImage(index=1, seed=i.seed, withheld=True) if i.index == 1 else i
                       for i in result.images)
        return result.model_copy(update={"images": images})


@pytest.fixture
async def app(tmp_path):
    gpu = HalfFlagged()
    settings = BotSettings(_env_file=None, DATA_DIR=tmp_path / "data", WANDB_MODE="disabled")
    services = make_app_services(settings, gpu)
    yield services, gpu
    await services.close()


async def generate(services, context=ANA, **options):
    admission = services.qwerty.admit(GenerateOptions(prompt_prefix="a painting of a", **options), context)
    generation = await services.qwerty.run(admission)
    await services.qwerty.finish(generation, "900", "https://discord.com/channels/7/8/900")
    return generation


async def test_the_job_record_keeps_what_a_button_needs_and_the_images_are_kept(app):
    services, _ = app
    generation = await generate(services, count=2, seed=5)
    stored = await services.actions.load(generation.generation_id)
    assert (stored.seeds, stored.withheld, stored.visible) == ((5, 6), frozenset({1}), [0])
    assert stored.prompt == "a painting of a qwerty dog" and stored.requester == "42"
    assert stored.link == "https://discord.com/channels/7/8/900"
    assert services.images.load(generation.row_id(0)) == generation.result.images[0].png
    assert services.images.load(generation.row_id(1)) is None  # withheld: never kept


async def test_reroll_repeats_the_request_with_new_seeds_for_the_clicker(app):
    services, gpu = app
    generation = await generate(services, count=2, seed=5, steps=7, negative_prompt="blur")
    stored = await services.actions.load(generation.generation_id)
    admission = services.actions.reroll(stored, BO)
    again = await services.qwerty.run(await services.actions.with_source_image(admission))
    request = gpu.generated[-1]
    assert (request.prompt_prefix, request.steps, request.negative_prompt, request.count, request.seed) == (
        "a painting of a", 7, "blur", 2, None)
    assert again.context.user_id == "43" and request.init_image is None


async def test_variations_start_from_the_kept_image_and_a_reroll_of_them_too(app):
    services, gpu = app
    generation = await generate(services, count=2, seed=5)
    stored = await services.actions.load(generation.generation_id)
    admission = await services.actions.with_source_image(services.actions.variations(stored, 0, BO))
    varied = await services.qwerty.run(admission)
    assert gpu.generated[-1].init_image == generation.result.images[0].png
    rerolled = services.actions.reroll(await services.actions.load(varied.generation_id), BO)
    await services.qwerty.run(await services.actions.with_source_image(rerolled))
    assert gpu.generated[-1].init_image == generation.result.images[0].png and gpu.generated[-1].seed is None


async def test_a_lost_image_comes_from_the_front_ends_fetch(app):
    services, gpu = app
    generation = await generate(services)
    services.images.delete([generation.row_id(0)])
    stored = await services.actions.load(generation.generation_id)
    asked = []

    async def fetch(record, row_id):
        asked.append((record.job_id, record.message_id, row_id))
        return b"from the message"

    admission = await services.actions.with_source_image(services.actions.variations(stored, 0, BO), fetch)
    assert admission.request.init_image == b"from the message"
    assert asked == [(generation.generation_id, "900", generation.row_id(0))]
    with pytest.raises(CommunityError, match="no longer available"):
        await services.actions.with_source_image(services.actions.variations(stored, 0, BO))


async def test_withheld_and_missing_images_are_refused(app):
    services, _ = app
    stored = await services.actions.load((await generate(services, count=2)).generation_id)
    with pytest.raises(ImageWithheld):
        services.actions.variations(stored, 1, BO)
    await services.community.set_gallery_channel("7", "500")
    with pytest.raises(ImageWithheld):
        await services.actions.begin_share(stored, 1, "7", "43")
    with pytest.raises(CommunityError, match="no image 5"):
        await services.actions.begin_share(stored, 5, "7", "43")
    with pytest.raises(GenerationGone):
        await services.actions.load("nosuchjob")


async def test_share_posts_once_and_a_failed_post_can_be_tried_again(app):
    services, _ = app
    await services.community.set_gallery_channel("7", "500")
    generation = await generate(services)
    stored = await services.actions.load(generation.generation_id)
    posted = []

    async def failing(share, png):
        raise OSError("discord is down")

    async def post(share, png):
        posted.append(png)
        return "500", "777"

    with pytest.raises(OSError):
        await services.actions.post_share(await services.actions.begin_share(stored, 0, "7", "43"), failing)
    share = await services.actions.post_share(await services.actions.begin_share(stored, 0, "7", "43"), post)
    assert posted == [generation.result.images[0].png] and share.link.endswith("/7/500/777")
    assert (share.creator_id, share.shared_by, share.seed) == ("42", "43", generation.result.images[0].seed)
    again = await services.actions.begin_share(stored, 0, "7", "44")
    assert again.kind == "already_shared" and share.link in again.message


async def test_delete_is_for_the_requester_or_a_moderator_and_forgets_the_images(app):
    services, _ = app
    generation = await generate(services)
    stored = await services.actions.load(generation.generation_id)
    with pytest.raises(NotAuthorized, match="Only the member who asked"):
        services.actions.require_delete(stored, "43", moderator=False)
    services.actions.require_delete(stored, "43", moderator=True)
    services.actions.require_delete(stored, "42", moderator=False)
    await services.actions.deleted(stored, "42")
    assert services.images.load(generation.row_id(0)) is None
    with pytest.raises(GenerationGone, match="deleted"):
        await services.actions.load(generation.generation_id)


async def test_banned_words_are_refused_at_admission_for_every_path(app):
    services, gpu = app
    stored = await services.actions.load((await generate(services)).generation_id)
    await services.community.add_banned_words("7", ["painting"])
    with pytest.raises(BannedWordError):
        services.qwerty.admit(GenerateOptions(prompt_prefix="an oil PAINTING"), ANA)
    with pytest.raises(BannedWordError):
        services.actions.reroll(stored, BO)
    with pytest.raises(BannedWordError):
        services.actions.variations(stored, 0, BO)
    assert len(gpu.generated) == 1 and services.queue.in_flight("43") == 0
    services.qwerty.admit(GenerateOptions(prompt_prefix="a painting"), RequestContext("discord", "1", guild_id="other"))


async def test_requests_name_the_live_version_so_a_rollback_applies_at_once(app):
    services, gpu = app
    for job in ("j1", "j2"):
        await gpu.train(TrainRequest(job_id=job, subject="qwerty", instance_phrase="qwerty dog", class_phrase="dog",
                                     images=(ImageSource(name="a"),)))
    await generate(services)
    assert gpu.generated[-1].subject_version == 2
    rollback = await services.admin.rollback(OPERATOR, "qwerty", 1)
    assert (rollback.previous, rollback.live.version) == (2, 1)
    await generate(services)
    assert gpu.generated[-1].subject_version == 1


def test_the_image_store_keeps_deletes_and_prunes(tmp_path):
    store = ImageStore(tmp_path / "images")
    assert store.load("abc-0") is None and store.prune(10) == 0
    store.path("abc-0").parent.mkdir(parents=True)
    store.path("abc-0").write_bytes(b"png")
    store.path("abc-1").write_bytes(b"png")
    assert store.load("abc-0") == b"png" and store.delete(["abc-0", "nope-0"]) == 1
    import os

    os.utime(store.path("abc-1"), (1000, 1000))
    assert store.prune(3600) == 1 and store.load("abc-1") is None
    assert store.load("../etc/passwd") is None
