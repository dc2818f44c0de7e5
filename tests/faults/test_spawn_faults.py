"""The bot dies right after spawning a Modal training, before it saved the call's id: the restart re-attaches
to that call by job id instead of starting a second training, and the version is announced once."""

from __future__ import annotations

import asyncio

import pytest

from commands.jobs import JobStore
from gpu_service.modal_deployment import FOLLOW_CALL
from modal_app import claim_job
from tests.faults.test_training_giveup_faults import prepared_job, training_service
from tests.gpu_service.test_modal_client import DONE, TRAIN_REQUEST, FakeApp, FakeCall, aio, make_client
from tests.test_modal_app import FakeDict


class ModalSide:
    """Spawned calls as Modal runs them: each one, when it starts, claims its job the way `modal_app.train`
    does (in the progress Dict the client reads), then trains or hands over to the call that runs the job."""

    def __init__(self, fake: FakeApp) -> None:
        self.fake = fake
        self.store = FakeDict()
        fake.progress = self.store.data  # the client reads the same Dict
        self.spawned: list[str] = []
        self.trained: list[str] = []

    def spawn(self, *, die_after: bool = False, then=None) -> None:
        """Deploy `train`; each spawn makes a call, then runs `then` (the calls Modal starts meanwhile)."""
        async def spawn(payload):
            call = FakeCall(f"fc-{len(self.spawned) + 1}", DONE, pending=2)
            self.spawned.append(call.object_id)
            self.fake.calls[call.object_id] = call
            if then is not None:
                then()
            if die_after:  # the bot is killed here: the call exists on Modal, its id is saved nowhere yet
                raise asyncio.CancelledError
            return call

        self.fake.functions["train"] = type("Train", (), {"spawn": aio(spawn)})()

    def start(self, call_id: str) -> None:
        """The call's container starts: it claims the job, or finds another call running it."""
        running = claim_job(self.store, TRAIN_REQUEST.job_id, call_id, lambda other: other in self.trained)
        call = self.fake.calls[call_id]
        if running is None:
            self.trained.append(call_id)
        else:
            call.outcome, call.pending = {FOLLOW_CALL: running}, 0


@pytest.fixture
async def setup(tmp_path):
    fake = FakeApp()
    jobs = JobStore(tmp_path / "jobs.sqlite3")
    service = training_service(make_client(fake), jobs, tmp_path / "jobs")
    yield fake, ModalSide(fake), service, jobs
    await jobs.close()


async def test_a_restart_after_a_kill_between_spawn_and_save_re_attaches_to_the_running_call(setup):
    fake, modal_side, service, jobs = setup
    modal_side.spawn(die_after=True)
    prepared = await prepared_job(service, TRAIN_REQUEST)
    with pytest.raises(asyncio.CancelledError):
        await service.run(prepared)
    modal_side.start("fc-1")  # the first call runs on while the bot is down
    record = await jobs.get("job-1")
    assert (record.state, record.call_id) == ("running", None)  # nothing saved: the kill came first

    modal_side.spawn()
    result = await service.resume(record)  # the next start
    assert modal_side.spawned == ["fc-1"] and modal_side.trained == ["fc-1"]  # one call, one training
    record = await jobs.get("job-1")
    assert (record.state, record.result["version"], record.call_id) == ("done", 3, "fc-1")
    assert result.version.version == 3


async def test_a_restart_before_the_first_call_started_hands_the_second_call_over_to_it(setup):
    fake, modal_side, service, jobs = setup
    modal_side.spawn(die_after=True)
    prepared = await prepared_job(service, TRAIN_REQUEST)
    with pytest.raises(asyncio.CancelledError):
        await service.run(prepared)
    record = await jobs.get("job-1")

    def both_start() -> None:
        modal_side.start("fc-1")  # the queued first call gets its GPU first
        modal_side.start("fc-2")  # and the second one finds it running the job

    modal_side.spawn(then=both_start)
    result = await service.resume(record)
    assert modal_side.trained == ["fc-1"] and result.version.version == 3
    record = await jobs.get("job-1")
    assert (record.state, record.call_id) == ("done", "fc-1")  # the call that trained, for the next restart


def test_a_call_of_a_job_whose_earlier_call_ended_runs_the_job_again():
    store = FakeDict()
    assert claim_job(store, "job-1", "fc-1", lambda other: True) is None
    assert claim_job(store, "job-1", "fc-2", lambda other: True) == "fc-1"  # fc-1 still runs
    assert claim_job(store, "job-1", "fc-1", lambda other: True) is None  # Modal retrying fc-1 itself
    assert claim_job(store, "job-1", "fc-3", lambda other: False) is None  # fc-1 ended: fc-3 takes over
    assert store.get("call:job-1") == "fc-3"
