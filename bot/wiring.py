"""The composition root: turn settings into the objects front ends use. Read settings once, pass down."""

from __future__ import annotations

from dataclasses import dataclass

from commands.generate import GenerationService
from commands.wandb_log import WandbConfig, WandbGenerationLog
from gpu_service.client import GpuClient
from gpu_service.settings import Settings


@dataclass
class Services:
    settings: Settings
    gpu: GpuClient
    generation_log: WandbGenerationLog
    generation: GenerationService

    async def close(self) -> None:
        self.generation_log.close()
        await self.gpu.close()


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


def make_services(settings: Settings, gpu: GpuClient | None = None) -> Services:
    gpu = gpu or make_gpu_client(settings)
    generation_log = WandbGenerationLog(wandb_config(settings))
    generation = GenerationService(gpu, generation_log, default_subject=settings.DEFAULT_SUBJECT)
    return Services(settings, gpu, generation_log, generation)
