"""Admin tools, independent of Discord: /models, /rollback, /status. Callers check the admin first.

Texts use Discord's light markdown (bold, code); the shell strips it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from commands.jobs import JobRecord, JobStore
from commands.permissions import AdminPolicy, Caller, visible
from commands.queue import FairQueue
from commands.subjects import SubjectCatalog
from commands.train import RunningTraining, TrainingService, progress_summary
from commands.wandb_log import LogStats
from gpu_service.client import GpuClient
from gpu_service.errors import InvalidRequest, SubjectNotFound
from gpu_service.schemas import ModelVersion, QualityReport, ServiceStatus
from gpu_service.subjects import subject_owner

log = logging.getLogger(__name__)
STATUS_TIMEOUT_S = 10.0
VERSIONS_SHOWN = 5  # per subject in /models; older ones are counted


@dataclass(frozen=True)
class Rollback:
    previous: int | None  # the version that was live before
    live: ModelVersion


@dataclass(frozen=True)
class StatusReport:
    service: ServiceStatus
    running: int  # /qwerty requests on the GPU now
    waiting: int
    trainings: tuple[RunningTraining, ...]  # in this process, with progress
    elsewhere: tuple[JobRecord, ...]  # trainings the job store says are running in another process
    generation_log: LogStats | None = None  # what became of the W&B rows; None when not known


class AdminService:
    def __init__(
        self, gpu: GpuClient, catalog: SubjectCatalog, queue: FairQueue, training: TrainingService, jobs: JobStore,
        log_stats: Callable[[], LogStats] | None = None, admins: AdminPolicy | None = None,
    ) -> None:
        self.admins = admins or AdminPolicy()
        self.gpu = gpu
        self.catalog = catalog
        self.queue = queue
        self.training = training
        self.jobs = jobs
        self.log_stats = log_stats

    async def models(self, caller: Caller) -> list[ModelVersion]:
        """Every version of every subject the caller's server sees (operators: all), fresh from the registry."""
        self.catalog.invalidate()
        everything = self.admins.is_operator(caller)
        return [v for v in await self.gpu.list_versions() if visible(v.owner, caller.guild_id, everything=everything)]

    async def rollback(self, caller: Caller, subject: str, version: int | None = None) -> Rollback:
        """Make `version` live now (default: the newest one older than the live one). The next request
        names it (commands/qwerty.py pins the live version), so no restart is needed. `subject` is the name
        as typed (this server's own subject first); operators may also give a key (`dog@700`)."""
        operator = self.admins.is_operator(caller)
        key = subject if operator and "@" in subject else await self.catalog.resolve(subject, caller.guild_id)
        versions = await self.gpu.list_versions(key)
        if not versions:
            raise SubjectNotFound(f"There is no trained subject `{subject}`.")
        self.admins.require_owner(caller, subject, subject_owner(key), "roll back")
        subject = key
        live = next((v.version for v in versions if v.active), None)
        if version is None:
            if live is None:
                raise InvalidRequest(f"`{subject}` has no live version; name the version to make live.")
            older = [v.version for v in versions if v.version < live]
            if not older:
                raise InvalidRequest(f"`{subject}` has no version older than the live v{live}; name one.")
            version = older[-1]
        if version not in {v.version for v in versions}:
            known = ", ".join(f"v{v.version}" for v in versions)
            raise SubjectNotFound(f"`{subject}` has no version {version} (it has {known}).")
        activated = await self.gpu.activate(subject, version)
        self.catalog.invalidate()
        log.info("rollback: %s v%s is live (was v%s)", subject, version, live)
        return Rollback(live, activated)

    async def status(self, caller: Caller | None = None) -> StatusReport:
        """The deployment's state; a server admin sees only the trainings of subjects their server sees."""
        try:
            async with asyncio.timeout(STATUS_TIMEOUT_S):
                service = await self.gpu.status()
        except Exception as error:  # status must answer even when the backend does not
            service = ServiceStatus(backend="?", reachable=False, warm=False, detail=f"{error.__class__.__name__}")
        seen = self._seen_by(caller)
        here = tuple(t for t in self.training.running() if seen(t.subject))
        ids = {training.job_id for training in here}
        elsewhere = tuple(r for r in await self.jobs.unfinished()
                          if r.kind == "train" and r.job_id not in ids and seen(str(r.request.get("subject", ""))))
        stats = self.log_stats() if self.log_stats is not None else None
        return StatusReport(service, self.queue.running_count, self.queue.waiting_count, here, elsewhere, stats)


    def _seen_by(self, caller: Caller | None) -> Callable[[str], bool]:
        everything = caller is None or self.admins.is_operator(caller)
        guild_id = caller.guild_id if caller else ""
        return lambda key: visible(subject_owner(key), guild_id, everything=everything)


def models_text(versions: Sequence[ModelVersion]) -> str:
    if not versions:
        return "No trained subjects yet: an admin can teach one with /train."
    by_subject: dict[str, list[ModelVersion]] = {}
    for version in versions:
        by_subject.setdefault(version.subject, []).append(version)
    lines = []
    for known in by_subject.values():
        live = next((v for v in known if v.active), None)
        phrase = live or known[-1]
        lines.append(f"**{display_name(phrase)}** (\"{phrase.instance_phrase}\", a {phrase.class_phrase}): "
                     f"{f'v{live.version} is live' if live else 'no live version'}")
        shown = known[-VERSIONS_SHOWN:]
        if len(known) > len(shown):
            lines.append(f"  … {len(known) - len(shown)} older version(s)")
        lines += [version_line(v) for v in reversed(shown)]
    return "\n".join(lines)


def display_name(version: ModelVersion) -> str:
    """`dog`, or `dog (server 700)` for a server's own subject: operators see every server's."""
    return f"{version.name} (server {version.owner})" if version.owner else version.name


def version_line(version: ModelVersion) -> str:
    when = version.created_at.strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"{'▶' if version.active else '·'} v{version.version}", f"trained {when}"]
    if version.trained_by:
        parts.append(f"by {version.trained_by}")
    if version.steps:
        loss = f", loss {version.final_loss:.4f}" if version.final_loss is not None else ""
        parts.append(f"{version.steps} steps{loss}")
    if version.quality is not None:
        parts.append(quality_part(version.quality))
    if link := wandb_link(version.wandb_url):
        parts.append(f"W&B <{link}>")
    elif version.wandb_url:
        parts.append("W&B logged offline")
    return "  " + " · ".join(parts)


def wandb_link(url: str | None) -> str | None:
    """`url` when it is a web page to link (https, a host, no credentials); None otherwise. An offline run
    records where its files are, a path inside whichever machine trained it: never a link."""
    if not url or any(char.isspace() or char in "<>" for char in url):
        return None
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        return None
    return url


def quality_part(quality: QualityReport) -> str:
    """The three DreamBooth scores and the verdict, short enough to compare versions line by line."""
    return f"DINO {quality.dino:.3f}, CLIP-I {quality.clip_i:.3f}, CLIP-T {quality.clip_t:.3f}: {quality.verdict}"


def rollback_text(rollback: Rollback) -> str:
    live = rollback.live
    was = f" (was v{rollback.previous})" if rollback.previous not in (None, live.version) else ""
    if rollback.previous == live.version:
        return f"`{live.name}` v{live.version} was already live; nothing changed."
    return f"`{live.name}` v{live.version} is live now{was}: the next /qwerty uses it."


def status_text(report: StatusReport) -> str:
    service = report.service
    reach = "reachable" if service.reachable else "NOT reachable"
    warmth = "warm" if service.warm else "cold"
    if service.last_cold_start_s is not None:
        warmth += f" (last cold start {service.last_cold_start_s:.0f} s)"
    detail = f" ({service.detail})" if service.detail else ""
    lines = [f"GPU backend `{service.backend}`: {reach}, {warmth}{detail}",
             f"Queue: {report.running} running, {report.waiting} waiting"]
    lines += [f"Damaged LoRA, set aside: {bad}" for bad in service.bad_versions]
    if report.generation_log is not None:
        lines.append(generation_log_text(report.generation_log))
    if not report.trainings and not report.elsewhere:
        lines.append("Trainings: none running")
    for training in report.trainings:
        lines.append(f"Training `{training.subject}` (job `{training.job_id}`): {progress_text(training)}")
    for record in report.elsewhere:
        subject = record.request.get("subject", "?")
        lines.append(f"Training `{subject}` (job `{record.job_id}`): {record.state}, as the {record.front_end} "
                     "recorded it (no progress here)")
    return "\n".join(lines)


def generation_log_text(stats: LogStats) -> str:
    state = "down, retrying" if stats.down else "up"
    return (f"W&B log: {state}; {stats.rows_logged} row(s) logged, {stats.rows_waiting} waiting, "
            f"{stats.rows_buffered} held while it was down, {stats.rows_dropped} dropped")


def progress_text(training: RunningTraining) -> str:
    progress = training.progress
    if progress is None:
        return "starting"
    return progress_summary(progress)
