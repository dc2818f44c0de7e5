"""The /train use case: options checked and images taken in before any GPU time; one training per
subject; every job recorded; a restart resumes from the images kept on disk."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace

import pytest
from PIL import Image

from commands.context import RequestContext
from commands.jobs import JobStore
from commands.subjects import SubjectCatalog
from commands.permissions import AdminPolicy, Caller
from commands.train import TrainDefaults, TrainingService, TrainOptions
from commands.training_gate import TrainingGate, TrainingLimits
from gpu_service.errors import GpuBusy, IntakeError, InvalidRequest, TrainingFailed
from gpu_service.intake import IntakePolicy, Rejection
from gpu_service.schemas import ImageSource
from tests.support.sleepy_gpu import SleepyGpu

OPERATOR = Caller.local_operator()
CONTEXT = RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7", channel_id="8")
DEFAULTS = TrainDefaults(subject="qwerty", instance_phrase="qwerty dog", class_phrase="dog")


def photo(seed: int, size: int = 80) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (seed * 40 % 256, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def attached(count: int) -> tuple[ImageSource, ...]:
    return tuple(ImageSource(data=photo(i), name=f"photo{i}.png") for i in range(count))


@pytest.fixture
async def setup(tmp_path):
    gpu = SleepyGpu()
    jobs = JobStore(tmp_path / "jobs.sqlite3")
    gate = TrainingGate(AdminPolicy(), TrainingLimits(max_concurrent=5, per_guild_per_day=50), gpu, jobs)
    service = TrainingService(
        gpu, jobs, SubjectCatalog(gpu), gate, policy=IntakePolicy(resolution=64), defaults=DEFAULTS,
        jobs_dir=tmp_path / "jobs",
    )
    yield service, gpu, jobs
    await jobs.close()


async def prepare(service, options, subject=None):
    """A prepared training whose lease is handed on (to `run`, or released by the test)."""
    async with service.preparing(replace(options, subject=subject or options.subject), CONTEXT, OPERATOR) as prepared:
        return prepared


async def test_images_are_taken_in_then_trained_and_the_job_recorded(setup, tmp_path):
    service, gpu, jobs = setup
    prepared = await prepare(service, TrainOptions(attachments=attached(3), steps=20))
    assert gpu.trained == []  # no GPU time before run
    assert (prepared.request.subject, prepared.request.instance_phrase) == ("qwerty", "qwerty dog")
    assert all(Image.open(io.BytesIO(i.data)).size == (64, 64) for i in prepared.request.images)
    assert (await jobs.get(prepared.job_id)).state == "queued"

    seen = []
    result = await service.run(prepared, seen.append)
    [request] = gpu.trained
    assert request == prepared.request and request.requested_by == "ana" and request.steps == 20
    record = await jobs.get(prepared.job_id)
    assert record.state == "done" and record.result["version"] == result.version.version == 1
    assert record.call_id == f"sleepy-{prepared.job_id}"  # stored to re-attach after a restart
    assert record.request["images"] == ["photo0.png", "photo1.png", "photo2.png"]
    assert seen[-1].state == "done"
    assert not (tmp_path / "jobs" / prepared.job_id).exists()  # the kept images go once it is done


async def test_rejected_images_are_listed_with_reasons_and_the_rest_used(setup):
    service, _, _ = setup
    options = TrainOptions(
        attachments=attached(3) + (ImageSource(data=b"<html>nope</html>", name="page.html"),),
        pre_rejected=(Rejection("huge.png", "larger than 20 MiB"),),
    )
    prepared = await prepare(service, options)
    assert len(prepared.request.images) == 3
    assert {r.name for r in prepared.rejected} == {"huge.png", "page.html"}
    assert all(r.reason for r in prepared.rejected)


async def test_too_few_usable_images_fail_before_any_gpu_time_with_every_reason(setup):
    service, gpu, jobs = setup
    options = TrainOptions(attachments=attached(1) + (ImageSource(data=b"GIF89a...", name="cat.gif"),),
                           pre_rejected=(Rejection("huge.png", "larger than 20 MiB"),))
    with pytest.raises(IntakeError) as caught:
        await prepare(service, options)
    assert "cat.gif" in caught.value.message and "huge.png: larger than 20 MiB" in caught.value.message
    assert gpu.trained == [] and await jobs.all() == []


async def test_from_discord_words_in_urls_are_links_never_local_files(setup, tmp_path):
    service, _, _ = setup
    secret = tmp_path / "secret.png"
    secret.write_bytes(photo(9))
    prepared = await prepare(service, TrainOptions(urls=str(secret), attachments=attached(3)))
    assert [r.name for r in prepared.rejected] == [str(secret)]
    assert len(prepared.request.images) == 3


async def test_the_shell_may_name_files_and_folders(setup, tmp_path):
    service, _, _ = setup
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(photo(i))
    (folder / "notes.txt").write_text("not a photo")
    extra = tmp_path / "extra.png"
    extra.write_bytes(photo(7))
    prepared = await prepare(service, TrainOptions(urls=f"{folder} {extra}", local_files=True))
    assert [i.name for i in prepared.request.images] == ["0.png", "1.png", "2.png", "extra.png"]


async def test_one_training_per_subject_at_a_time(setup):
    service, gpu, jobs = setup
    gpu.gate = asyncio.Event()
    prepared = await prepare(service, TrainOptions(attachments=attached(3)))
    running = asyncio.create_task(service.run(prepared))
    with pytest.raises(GpuBusy, match="already running"):
        await prepare(service, TrainOptions(attachments=attached(3)))
    assert len(await jobs.all()) == 1  # refused before any intake or job record
    other = await prepare(service, TrainOptions(attachments=attached(3), instance_phrase="sks cat",
                                                class_phrase="cat"), subject="other")
    other.lease.release()  # other subjects are free
    gpu.gate.set()
    await asyncio.wait_for(running, 5)
    service.leases.take("qwerty").release()  # free again once it ended


async def test_a_new_subject_needs_its_phrases_before_anything_is_fetched(setup):
    service, gpu, jobs = setup
    with pytest.raises(InvalidRequest, match="new subject.*instance_phrase"):
        await prepare(service, TrainOptions(attachments=attached(3)), subject="cat")
    with pytest.raises(InvalidRequest, match="subject"):
        await prepare(service, TrainOptions(attachments=attached(3)), subject="Not A Name!")
    with pytest.raises(InvalidRequest, match="steps"):
        await prepare(service, TrainOptions(attachments=attached(3), steps=0))
    assert await jobs.all() == []


async def test_a_known_subject_keeps_its_phrases_unless_new_ones_are_given(setup):
    service, _, _ = setup
    first = await prepare(service, TrainOptions(attachments=attached(3), instance_phrase="sks cat",
                                                class_phrase="cat"), subject="cat")
    await service.run(first)
    again = await prepare(service, TrainOptions(attachments=attached(3)), subject="cat")
    assert (again.request.instance_phrase, again.request.class_phrase) == ("sks cat", "cat")


async def test_no_images_at_all_is_a_clear_refusal(setup):
    service, _, _ = setup
    with pytest.raises(InvalidRequest, match="No images"):
        await prepare(service, TrainOptions())


async def test_a_failed_training_is_recorded_and_frees_the_subject(setup, tmp_path):
    service, gpu, jobs = setup
    prepared = await prepare(service, TrainOptions(attachments=attached(3)))
    gpu.fail_with = TrainingFailed("Loss became NaN.")
    with pytest.raises(TrainingFailed):
        await service.run(prepared)
    record = await jobs.get(prepared.job_id)
    assert record.state == "failed" and "Loss became NaN" in record.error
    assert not (tmp_path / "jobs" / prepared.job_id).exists()
    service.leases.take("qwerty").release()


async def test_a_shutdown_mid_training_leaves_the_job_running_and_resume_finishes_it(setup):
    service, gpu, jobs = setup
    gpu.gate = asyncio.Event()
    prepared = await prepare(service, TrainOptions(attachments=attached(3)))
    running = asyncio.create_task(service.run(prepared))
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    record = await jobs.get(prepared.job_id)
    assert record.state == "running" and record.call_id == f"sleepy-{prepared.job_id}"

    gpu.gate.set()
    result = await service.resume(record)
    [(request, call_id)] = gpu.resumed
    assert call_id == record.call_id
    assert [i.data for i in request.images] == [i.data for i in prepared.request.images]
    assert (await jobs.get(prepared.job_id)).state == "done" and result.version.subject == "qwerty"


async def test_a_job_whose_images_are_gone_cannot_resume_and_is_marked_failed(setup, tmp_path):
    service, gpu, jobs = setup
    prepared = await prepare(service, TrainOptions(attachments=attached(3)))
    prepared.lease.release()
    for path in (tmp_path / "jobs" / prepared.job_id).iterdir():
        path.unlink()
    with pytest.raises(TrainingFailed, match="could not be resumed"):
        await service.resume(await jobs.get(prepared.job_id))
    assert (await jobs.get(prepared.job_id)).state == "failed" and gpu.resumed == []


async def test_a_job_whose_subject_is_taken_by_a_newer_training_is_marked_failed_not_retried(setup):
    service, gpu, jobs = setup
    interrupted = await prepare(service, TrainOptions(attachments=attached(3)))
    interrupted.lease.release()
    newer = service.leases.take("qwerty")  # a /train that arrived before the restart's resume
    with pytest.raises(GpuBusy):
        await service.resume(await jobs.get(interrupted.job_id))
    record = await jobs.get(interrupted.job_id)
    assert record.state == "failed" and "newer training" in record.error and gpu.resumed == []
    newer.release()


async def test_a_front_end_that_fails_before_the_training_starts_releases_the_lease_and_abandons_the_job(setup):
    service, gpu, jobs = setup
    with pytest.raises(RuntimeError, match="could not post"):
        async with service.preparing(TrainOptions(attachments=attached(3)), CONTEXT, OPERATOR) as prepared:
            raise RuntimeError("could not post the progress message")
    record = await jobs.get(prepared.job_id)
    assert record.state == "failed" and "stopped before the training started" in record.error
    assert "qwerty" not in service.leases and gpu.trained == []


async def test_a_failed_intake_releases_the_lease(setup):
    service, _, jobs = setup
    with pytest.raises(InvalidRequest, match="No images"):
        async with service.preparing(TrainOptions(), CONTEXT, OPERATOR):
            pass
    assert "qwerty" not in service.leases and await jobs.all() == []
