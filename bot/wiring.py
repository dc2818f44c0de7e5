"""The composition root: turn settings into the objects front ends use. Read settings once, pass down."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

from bot.settings import BotSettings
from commands.actions import ActionService
from commands.admin import AdminService
from commands.community import CommunityService, CommunityStore
from commands.context import RequestContext
from commands.images import ImageStore
from commands.jobs import JobStore
from commands.permissions import AdminPolicy
from commands.queue import FairQueue, QueueLimits
from commands.qwerty import PromptCheck, QwertyService
from commands.subjects import SubjectCatalog
from commands.train import TrainDefaults, TrainingService
from commands.training_gate import TrainingGate, TrainingLimits
from commands.wandb_log import WandbConfig, WandbGenerationLog
from gpu_service.client import GpuClient
from gpu_service.intake.policy import intake_policy
from gpu_service.schemas import GenerateRequest
from gpu_service.settings import Settings


def make_gpu_client(settings: Settings) -> GpuClient:
    if settings.GPU_BACKEND == "modal":
        from gpu_service.modal_client import ModalGpuClient

        return ModalGpuClient(settings)
    from gpu_service.local_client import LocalGpuClient

    return LocalGpuClient(settings)


def wandb_config(settings: Settings) -> WandbConfig:
    key = settings.WANDB_API_KEY
    return WandbConfig(
        project=settings.PROJECT_NAME, mode=settings.wandb_mode, directory=settings.wandb_dir,
        entity=settings.WANDB_ENTITY, api_key=key.get_secret_value() if key else None,
    )


def keep_wandb_files_in_data_dir(settings: Settings, environ: MutableMapping[str, str]) -> None:
    """W&B stages artifacts (the table images) and keeps its cache under the home directory unless told
    otherwise, and only its environment variables tell it. Called once by the entry point."""
    root = settings.DATA_DIR.resolve() / "wandb-home"
    for name, folder in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config")):
        environ.setdefault(name, str(root / folder))


@dataclass
class AppServices:
    """What every front end uses: the use cases with their queue, job store and GPU client."""

    settings: BotSettings
    gpu: GpuClient
    generation_log: WandbGenerationLog
    jobs: JobStore
    queue: FairQueue
    subjects: SubjectCatalog
    qwerty: QwertyService
    training: TrainingService
    community: CommunityService
    images: ImageStore
    actions: ActionService
    admin: AdminService
    admins: AdminPolicy

    async def close(self) -> None:
        self.generation_log.close()
        await self.gpu.close()
        await self.jobs.close()
        self.community.store.close()


def queue_limits(settings: BotSettings) -> QueueLimits:
    return QueueLimits(
        max_running_per_user=settings.MAX_RUNNING_PER_USER, max_waiting_per_user=settings.MAX_WAITING_PER_USER,
        concurrency=settings.GPU_CONCURRENCY, max_wait_s=settings.QUEUE_TIMEOUT_S,
    )


def training_limits(settings: BotSettings) -> TrainingLimits:
    return TrainingLimits(
        max_concurrent=settings.MAX_CONCURRENT_TRAININGS, per_guild_per_day=settings.TRAININGS_PER_GUILD_PER_DAY,
        max_steps=settings.MAX_TRAIN_STEPS, max_subjects_per_guild=settings.MAX_SUBJECTS_PER_GUILD,
    )


def make_app_services(settings: BotSettings, gpu: GpuClient | None = None) -> AppServices:
    gpu = gpu or make_gpu_client(settings)
    generation_log = WandbGenerationLog(wandb_config(settings))
    jobs = JobStore(settings.DATA_DIR / "jobs.sqlite3")
    queue = FairQueue(queue_limits(settings), noun="/qwerty requests")
    subjects = SubjectCatalog(gpu)
    # Shares, votes and deletions go to the same W&B run as the generations, against their row ids.
    community = CommunityService(CommunityStore(settings.DATA_DIR / "community.sqlite3"), generation_log)
    images = ImageStore(settings.DATA_DIR / "images")
    qwerty = QwertyService(
        gpu, queue, jobs, generation_log, default_subject=settings.DEFAULT_SUBJECT,
        timeout_s=settings.GENERATION_TIMEOUT_S, images=images, catalog=subjects,
        prompt_check=banned_words(community), server_defaults=community.defaults_for,
    )
    defaults = TrainDefaults(
        subject=settings.DEFAULT_SUBJECT, instance_phrase=settings.INSTANCE_PHRASE,
        class_phrase=settings.CLASS_PHRASE, images_file_url=settings.IMAGES_FILE_URL,
    )
    admins = AdminPolicy.of(settings.OPERATOR_USER_IDS, settings.ADMIN_ROLE_IDS)
    gate = TrainingGate(admins, training_limits(settings), gpu, jobs)
    training = TrainingService(
        gpu, jobs, subjects, gate, policy=intake_policy(settings), defaults=defaults,
        jobs_dir=settings.DATA_DIR / "jobs", timeout_s=settings.TRAIN_TIMEOUT_S,
    )
    actions = ActionService(jobs, qwerty, community, images)
    admin = AdminService(gpu, subjects, queue, training, jobs, generation_log.stats, admins)
    return AppServices(settings, gpu, generation_log, jobs, queue, subjects, qwerty, training, community, images,
                       actions, admin, admins)


def banned_words(community: CommunityService) -> PromptCheck:
    """The guild's banned words, checked at admission: before any GPU time."""

    def check(context: RequestContext, request: GenerateRequest) -> None:
        community.check_prompt(context.guild_id, request.prompt_prefix, request.prompt_postfix,
                               request.negative_prompt)

    return check
