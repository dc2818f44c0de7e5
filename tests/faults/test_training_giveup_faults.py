"""The bot gives up on a training (its own limit, or the Modal client's): the training is cancelled for real.
Nothing is published after the bot stops waiting; a version that made it out before the cancel is announced."""

from __future__ import annotations

import asyncio
from pathlib import Path

import modal.exception
import pytest

from commands.context import RequestContext
from commands.jobs import JobRecord, JobStore
from commands.permissions import AdminPolicy
from commands.subjects import SubjectCatalog
from commands.train import PreparedTraining, TrainDefaults, TrainingService
from commands.training_gate import TrainingGate, TrainingLimits
from gpu_service.errors import GpuTimeout
from gpu_service.intake import IntakePolicy
from gpu_service.schemas import TrainRequest
from tests.gpu_service.test_modal_client import DONE, TRAIN_REQUEST, FakeApp, FakeCall, aio, make_client, spawner

CONTEXT = RequestContext(front_end="discord", user_id="42", user_name="ana", guild_id="7", channel_id="8")
DEFAULTS = TrainDefaults(subject="qwerty", instance_phrase="qwerty dog", class_phrase="dog")


def training_service(gpu, jobs: JobStore, jobs_dir: Path, timeout_s: float = 7200.0) -> TrainingService:
    gate = TrainingGate(AdminPolicy(), TrainingLimits(max_concurrent=5, per_guild_per_day=50), gpu, jobs)
    return TrainingService(
        gpu, jobs, SubjectCatalog(gpu), gate, policy=IntakePolicy(resolution=64), defaults=DEFAULTS,
        jobs_dir=jobs_dir, timeout_s=timeout_s,
    )


async def prepared_job(service: TrainingService, request: TrainRequest) -> PreparedTraining:
    """A job as `preparing` leaves it: images kept on disk, recorded "queued", the subject's lease taken."""
    await asyncio.to_thread(service._save_images, request)
    names = [image.name for image in request.images]
    fields = request.model_dump(mode="json", exclude={"images"})
    await service.jobs.add(JobRecord.new(request.job_id, "train", CONTEXT, {**fields, "images": names}))
    return PreparedTraining(request, CONTEXT, (), service.leases.take(request.subject))


class CancellableCall(FakeCall):
    """A spawned training that never finishes while polled; `cancel` stops it, or it finishes anyway when
    the cancel comes too late (`finishes_anyway`)."""

    def __init__(self, call_id: str, *, finishes_anyway: bool) -> None:
        super().__init__(call_id, DONE, pending=10**6)
        self.finishes_anyway = finishes_anyway
        self.cancelled = False
        self.cancel = aio(self._cancel)

    async def _cancel(self):
        self.cancelled = True
        self.pending = self.polls  # it ends at the next poll
        if not self.finishes_anyway:
            self.outcome = modal.exception.RemoteError("Input was cancelled")  # what Modal raises for it


@pytest.fixture
async def modal_setup(tmp_path):
    fake = FakeApp()
    jobs = JobStore(tmp_path / "jobs.sqlite3")
    client = make_client(fake, train_follow_s=0.05)  # the Modal client's own limit acts first
    service = training_service(client, jobs, tmp_path / "jobs")
    yield fake, service, jobs
    await jobs.close()


async def test_a_modal_training_the_bot_gives_up_on_is_cancelled_and_publishes_nothing(modal_setup, tmp_path):
    fake, service, jobs = modal_setup
    call = CancellableCall("fc-123", finishes_anyway=False)
    spawner(fake, [call])
    prepared = await prepared_job(service, TRAIN_REQUEST)
    with pytest.raises(GpuTimeout, match="nothing was published"):
        await service.run(prepared)
    assert call.cancelled
    record = await jobs.get("job-1")
    assert record.state == "failed" and "nothing was published" in record.error
    assert "rex" not in service.leases and not (tmp_path / "jobs" / "job-1").exists()


async def test_a_modal_training_that_finishes_as_it_is_cancelled_is_announced_not_lost(modal_setup):
    fake, service, jobs = modal_setup
    call = CancellableCall("fc-123", finishes_anyway=True)
    spawner(fake, [call])
    prepared = await prepared_job(service, TRAIN_REQUEST)
    result = await service.run(prepared)
    assert call.cancelled and result.version.version == 3  # the caller announces "v3 is live"
    record = await jobs.get("job-1")
    assert record.state == "done" and record.result["version"] == 3 and record.call_id == "fc-123"


@pytest.mark.slow
async def test_a_local_training_past_the_bots_limit_stops_at_its_next_step(tmp_path, tiny_model_dir):
    from gpu_service.local_client import LocalGpuClient
    from tests.conftest import make_settings
    from tests.gpu_service.test_local_training import train_request

    # Far more steps than can run before the bot's limit: without a real stop it would publish much later.
    settings = make_settings(tmp_path / "data", tiny_model_dir, TRAIN_STEPS=5000, TRAIN_CLASS_IMAGES=1,
                             TRAIN_CHECKPOINT_EVERY=5000, QUALITY_ENABLED=False)
    client = LocalGpuClient(settings)
    jobs = JobStore(tmp_path / "jobs.sqlite3")
    service = training_service(client, jobs, tmp_path / "jobs", timeout_s=1.0)
    try:
        prepared = await prepared_job(service, train_request("job-slow"))
        with pytest.raises(GpuTimeout, match="nothing was published"):
            await service.run(prepared)
        record = await jobs.get("job-slow")
        assert record.state == "failed" and "did not finish within" in record.error
        assert await client.list_versions("qwerty") == []
        assert "qwerty" not in client.training_leases and "qwerty" not in service.leases  # the subject is free
        again = await client.train(train_request("job-next", steps=2))  # and the GPU too
        assert again.version.version == 1
    finally:
        await jobs.close()
        await client.close()
