"""Whether a /train may start: the subject's owner and the deployment's budgets, counted in the job store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commands.context import RequestContext
from commands.jobs import JobRecord, JobStore
from commands.permissions import AdminPolicy, Caller, NotAuthorized
from commands.training_gate import TrainingBudget, TrainingGate, TrainingLimits
from gpu_service.errors import GpuBusy, InvalidRequest
from gpu_service.schemas import ImageSource, TrainRequest
from tests.support.sleepy_gpu import SleepyGpu

OPERATOR = Caller(1)
ADMIN_A = Caller(2, administrator=True, guild_id="700")
ADMIN_B = Caller(3, administrator=True, guild_id="800")
NOON = datetime(2026, 12, 4, 12, 30, tzinfo=UTC).timestamp()


@pytest.fixture
async def gate(tmp_path):
    gpu, jobs = SleepyGpu(), JobStore(tmp_path / "jobs.sqlite3")
    limits = TrainingLimits(max_concurrent=1, per_guild_per_day=2, max_steps=100, max_subjects_per_guild=2)
    yield TrainingGate(AdminPolicy.of([1]), limits, gpu, jobs, clock=lambda: NOON), gpu, jobs
    await jobs.close()


async def trained(gpu: SleepyGpu, key: str) -> None:
    await gpu.train(TrainRequest(job_id=f"j-{key.replace('@', '-')}", subject=key, instance_phrase="sks dog",
                                 class_phrase="dog", images=(ImageSource(name="a"),)))


async def admitted(gate: TrainingGate, caller: Caller, name: str) -> str:
    """Admit, then record at once (as TrainingService does once the images are in)."""
    key = await gate.admit(caller, name, None)
    gate.recorded()
    return key


async def record(jobs: JobStore, job_id: str, guild: str, *, state="done", at=NOON - 60) -> None:
    context = RequestContext(front_end="discord", user_id="2", guild_id=guild)
    await jobs.add(JobRecord.new(job_id, "train", context, {}, state=state))
    await jobs.update(job_id, created_at=at)


async def test_a_server_admin_trains_the_servers_own_subject_never_a_global_or_another_servers(gate):
    gate, gpu, _ = gate
    await trained(gpu, "qwerty")
    await trained(gpu, "rex@800")
    assert await admitted(gate, ADMIN_A, "qwerty") == "qwerty@700"  # its own qwerty; the global one is untouched
    assert await admitted(gate, ADMIN_A, "rex") == "rex@700"  # server 800's rex stays theirs
    assert await admitted(gate, ADMIN_B, "rex") == "rex@800"
    assert await admitted(gate, OPERATOR, "qwerty") == "qwerty"  # operators train the global subjects
    with pytest.raises(NotAuthorized, match="Only admins"):
        await gate.admit(Caller(9, guild_id="700"), "cat", None)


async def test_a_server_owns_at_most_its_budget_of_subjects(gate):
    gate, gpu, _ = gate
    await trained(gpu, "cat@700")
    await trained(gpu, "fox@700")
    await trained(gpu, "owl")  # global ones do not count
    with pytest.raises(TrainingBudget, match="already has 2 subjects.*MAX_SUBJECTS_PER_GUILD = 2"):
        await gate.admit(ADMIN_A, "owl2", None)
    assert await admitted(gate, ADMIN_A, "cat") == "cat@700"  # retraining one of its own is fine
    assert await admitted(gate, ADMIN_B, "owl2") == "owl2@800"


async def test_steps_are_capped(gate):
    gate, _, _ = gate
    with pytest.raises(InvalidRequest, match="`steps` can be at most 100"):
        await gate.admit(ADMIN_A, "cat", 101)


async def test_trainings_running_anywhere_count_against_the_deployment_limit(gate):
    gate, _, jobs = gate
    await record(jobs, "running-elsewhere", "800", state="running")
    with pytest.raises(GpuBusy, match="MAX_CONCURRENT_TRAININGS = 1"):
        await gate.admit(OPERATOR, "cat", None)


async def test_a_servers_daily_budget_names_the_limit_and_when_it_resets(gate):
    gate, _, jobs = gate
    await record(jobs, "yesterday", "700", at=NOON - 86400)
    await record(jobs, "other-server", "800")
    await record(jobs, "today-1", "700")
    assert await admitted(gate, ADMIN_A, "cat") == "cat@700"
    await record(jobs, "today-2", "700", state="failed")  # a failed training still cost GPU time
    with pytest.raises(TrainingBudget, match="used its 2 trainings for today.*00:00 UTC, in 11 h 30 min"):
        await gate.admit(ADMIN_A, "cat", None)
    assert await admitted(gate, OPERATOR, "qwerty") == "qwerty"  # operators are not counted


async def test_budgets_survive_a_restart(gate, tmp_path):
    gate, gpu, jobs = gate
    await record(jobs, "today-1", "700")
    await record(jobs, "today-2", "700")
    await jobs.close()
    reopened = JobStore(tmp_path / "jobs.sqlite3")
    try:
        again = TrainingGate(gate.policy, gate.limits, gpu, reopened, clock=lambda: NOON)
        with pytest.raises(TrainingBudget):
            await again.admit(ADMIN_A, "cat", None)
    finally:
        await reopened.close()


async def test_two_trainings_admitted_together_cannot_both_pass_the_limit(gate):
    """The second arrives while the first's images are still being fetched (no job recorded yet)."""
    gate, _, jobs = gate
    assert await gate.admit(OPERATOR, "cat", None) == "cat"
    with pytest.raises(GpuBusy, match="MAX_CONCURRENT_TRAININGS = 1"):
        await gate.admit(OPERATOR, "owl", None)
    await record(jobs, "cat-job", "", state="queued")
    gate.recorded()  # the first is in the store now: still one
    with pytest.raises(GpuBusy):
        await gate.admit(OPERATOR, "owl", None)
