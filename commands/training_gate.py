"""Whether a /train may start: which subject key it trains (whose subject), and the deployment's budgets. Checked before any image
is fetched or any GPU time is spent, from the registry (owners) and the job store (counts), so the budgets
hold across restarts and across backends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from commands.errors import MemberError
from commands.jobs import JobStore
from commands.permissions import AdminPolicy, Caller
from gpu_service.client import GpuClient
from gpu_service.errors import GpuBusy, InvalidRequest
from gpu_service.subjects import GLOBAL, subject_key


class TrainingBudget(MemberError):
    """A budget of the deployment (trainings a day, subjects per server) is used up."""


@dataclass(frozen=True)
class TrainingLimits:
    max_concurrent: int = 1  # the whole deployment
    per_guild_per_day: int = 3
    max_steps: int = 2000
    max_subjects_per_guild: int = 5


class TrainingGate:
    def __init__(
        self, policy: AdminPolicy, limits: TrainingLimits, gpu: GpuClient, jobs: JobStore, *, clock=time.time,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self.gpu = gpu
        self.jobs = jobs
        self.clock = clock
        # Admitted in this process but not yet in the job store (its images are being fetched): counted too,
        # so two /train arriving together cannot both pass the concurrency limit.
        self.starting = 0

    async def admit(self, caller: Caller, name: str, steps: int | None) -> str:
        """The key of the subject to train (gpu_service/subjects.py): global for an operator, the caller's
        server's own otherwise (created by its first training, so a server admin's `/train subject:qwerty` never
        changes what other servers get from `qwerty`). NotAuthorized, InvalidRequest, GpuBusy or TrainingBudget
        when it may not start."""
        self.policy.require(caller, "train")
        key = await self._key(caller, name)
        if steps is not None and steps > self.limits.max_steps:
            raise InvalidRequest(f"`steps` can be at most {self.limits.max_steps:,} on this bot.")
        await self._check_concurrent()
        if not self.policy.is_operator(caller):
            await self._check_daily(caller.guild_id)
        self.starting += 1
        return key

    def recorded(self) -> None:
        """The admitted training's job is in the store now (or will never be): it counts there from now on."""
        self.starting -= 1

    async def _key(self, caller: Caller, name: str) -> str:
        owner = self.policy.new_subject_owner(caller)
        key = subject_key(name, owner)
        if owner == GLOBAL:
            return key
        versions = await self.gpu.list_versions()  # the registry itself, never a cache
        own = {version.subject for version in versions if version.owner == owner}
        if key not in own and len(own) >= self.limits.max_subjects_per_guild:
            raise TrainingBudget(
                f"This server already has {len(own)} subjects, the most it can have "
                f"(MAX_SUBJECTS_PER_GUILD = {self.limits.max_subjects_per_guild}). Train one of them again "
                "instead, or ask the bot's operators."
            )
        return key

    async def _check_concurrent(self) -> None:
        running = len([job for job in await self.jobs.unfinished() if job.kind == "train"]) + self.starting
        if running >= self.limits.max_concurrent:
            raise GpuBusy(
                f"{running} training(s) are already running on this bot, the most it runs at once "
                f"(MAX_CONCURRENT_TRAININGS = {self.limits.max_concurrent}). Try again when one has finished."
            )

    async def _check_daily(self, guild_id: str) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = [job for job in await self.jobs.all()
                 if job.kind == "train" and job.guild_id == guild_id and job.created_at >= midnight.timestamp()]
        if len(today) >= self.limits.per_guild_per_day:
            left = midnight + timedelta(days=1) - now
            hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
            raise TrainingBudget(
                f"This server has used its {self.limits.per_guild_per_day} trainings for today "
                f"(TRAININGS_PER_GUILD_PER_DAY). The count resets at 00:00 UTC, in {hours} h {minutes} min."
            )
