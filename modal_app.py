"""The GPU service on Modal: `modal deploy modal_app.py` (`make deploy`). Wiring only; the engine is gpu_service.

Settings are read once, here, on the machine that deploys (environment, then .env). Containers read no .env
file: they get the same non-secret settings as image environment variables, and the secrets from Modal
Secrets, so every name derived from a setting (Volumes, the progress Dict) is the same on both sides.

Heavy imports (torch, diffusers) happen only inside the container's hooks and functions, so this file imports
where only the bot's dependencies are installed.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import tomllib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import modal
from pydantic import SecretStr

from gpu_service.boundary import boundary
from gpu_service.engine.train_wandb import WandbTrainingConfig, move_live_alias
from gpu_service.leases import SharedTrainingLease, deployment_slot
from gpu_service.modal_deployment import FOLLOW_CALL, MINUTES, TRAIN_TIMEOUT_S, ModalNames, training_call_key
from gpu_service.registry import ModelRegistry
from gpu_service.schemas import GenerateRequest, GenerateResult, TrainProgress, TrainRequest
from gpu_service.settings import Settings

log = logging.getLogger("modal_app")

settings = Settings()
names = ModalNames(settings.PROJECT_NAME)

CONTAINER_DATA_DIR = PurePosixPath("/data")  # DATA_DIR in the containers; the registry Volume is mounted inside
REGISTRY_DIR = CONTAINER_DATA_DIR / "registry"  # == Settings(DATA_DIR=/data).registry_dir
HF_CACHE_DIR = PurePosixPath("/cache/huggingface")  # HF_HOME: base weights are downloaded once, then reused
# WANDB_DIR: runs logged offline (no W&B key) land on the W&B Volume, for `make wandb-sync` to bring home.
WANDB_DIR = CONTAINER_DATA_DIR / "wandb"
INFERENCE_TIMEOUT_S = 5 * MINUTES  # one request; the client gives up sooner (MODAL_CALL_TIMEOUT_S)
STARTUP_TIMEOUT_S = 20 * MINUTES  # the very first start downloads the base model
REGISTRY_CALL_TIMEOUT_S = 1 * MINUTES
DOWNLOAD_TIMEOUT_S = 60 * MINUTES  # the base model is a few GB
# What the loaders read: configs, tokenizers and weights. The base model's weights are its components'
# full-precision safetensors (a repo's root also holds multi-GB single-file checkpoints nothing here reads).
BASE_MODEL_FILES = ["*.json", "*.txt", "*/*.safetensors"]
QUALITY_MODEL_FILES = ["*.json", "*.txt", "*.safetensors", "*.bin"]  # some vision repos have only .bin weights
SKIPPED_FILES = ["*.fp16.*", "*non_ema*", "*.ckpt", "*.msgpack", "*.h5", "*.onnx*"]
# Up to 8 requests share a container; the autoscaler aims at 4, the micro-batcher's batch size.
MAX_CONCURRENT_INPUTS = 8
TARGET_CONCURRENT_INPUTS = 4
BOT_ONLY_REQUIREMENTS = {"discord.py", "modal"}  # Modal puts its own client in every container


def engine_requirements(pyproject: Path) -> list[str]:
    """The image's pip requirements, from pyproject.toml: the base dependencies plus the `gpu` extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["gpu"]]
    return sorted(req for req in wanted if _requirement_name(req) not in BOT_ONLY_REQUIREMENTS)


def _requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group().lower()


def container_env(values: Settings) -> dict[str, str]:
    """The settings the containers run with, as environment variables. Secrets are left to Modal Secrets."""
    # Set secrets are SecretStr; unset ones are None and dropped with the other unset optionals.
    secret = {name for name in Settings.model_fields if isinstance(getattr(values, name), SecretStr)}
    dumped = values.model_dump(mode="json", exclude=secret, exclude_none=True)
    dumped.update(DATA_DIR=str(CONTAINER_DATA_DIR), OUTPUTS_DIR=str(CONTAINER_DATA_DIR / "outputs"))
    dumped["WANDB_DIR"] = str(WANDB_DIR)  # never the deploying machine's own WANDB_DIR
    dumped["GPU_BACKEND"] = "local"  # inside the container the engine runs in-process
    dumped["ALLOW_PRIVATE_URLS"] = False  # a developer's loopback-test setting never reaches production
    env = {name: value if isinstance(value, str) else json.dumps(value) for name, value in dumped.items()}
    env["HF_HOME"] = str(HF_CACHE_DIR)
    return env


# Inside a container pyproject.toml is not there, and the image is already built: nothing to install.
_requirements = engine_requirements(Path(__file__).with_name("pyproject.toml")) if modal.is_local() else []
image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*_requirements)
    .env(container_env(settings))
    .add_local_python_source("gpu_service")
)

registry_volume = modal.Volume.from_name(names.registry_volume, create_if_missing=True)
hf_cache_volume = modal.Volume.from_name(names.hf_cache_volume, create_if_missing=True)
wandb_volume = modal.Volume.from_name(names.wandb_volume, create_if_missing=True)
VOLUMES = {str(REGISTRY_DIR): registry_volume, str(HF_CACHE_DIR): hf_cache_volume, str(WANDB_DIR): wandb_volume}
huggingface_secret = modal.Secret.from_name(names.huggingface_secret, required_keys=["HUGGINGFACE_TOKEN"])
wandb_secret = modal.Secret.from_name(names.wandb_secret, required_keys=["WANDB_API_KEY"])
training_progress = modal.Dict.from_name(names.training_progress, create_if_missing=True)

app = modal.App(names.app, image=image)


@app.cls(
    gpu=settings.GPU_TYPE,
    scaledown_window=settings.MODAL_SCALEDOWN_WINDOW_S,
    min_containers=settings.MODAL_MIN_CONTAINERS,
    volumes=VOLUMES,
    secrets=[huggingface_secret],
    timeout=INFERENCE_TIMEOUT_S,
    startup_timeout=STARTUP_TIMEOUT_S,
    enable_memory_snapshot=True,
)
@modal.concurrent(max_inputs=MAX_CONCURRENT_INPUTS, target_inputs=TARGET_CONCURRENT_INPUTS)
class Inference:
    """One warm pipeline per container. Concurrent inputs run on threads and meet in the micro-batcher."""

    @modal.enter(snap=True)
    def import_engine(self) -> None:
        """Snapshotted: importing torch, diffusers and transformers is most of a cold start's CPU time.

        The weights load after restore, in `load`: InferenceService.load picks CUDA by itself, and no GPU is
        attached while the snapshot is taken. Nothing here may touch CUDA or start a thread.
        """
        import gpu_service.engine.service  # noqa: F401

    @modal.enter(snap=False)
    def load(self) -> None:
        from gpu_service.engine.service import InferenceService

        logging.basicConfig(level=logging.INFO)
        self.service = InferenceService.from_settings(settings, reload_storage=reload_registry)
        with boundary(f"loading {settings.BASE_MODEL}"):
            self.service.load()
        hf_cache_volume.commit()  # the first container downloaded the base model: share it now

    @modal.exit()
    def close(self) -> None:
        if hasattr(self, "service"):
            self.service.close()

    @modal.method()
    def generate(self, request: dict) -> dict:
        with boundary("generating"):
            return self.service.generate(GenerateRequest.model_validate(request)).model_dump()

    @modal.method()
    def generate_stream(self, request: dict):
        """{"kind": "progress", "data": ...} for each step (with a small preview), then {"kind": "result", ...}."""
        with boundary("generating"):
            for item in self.service.generate_stream(GenerateRequest.model_validate(request)):
                kind = "result" if isinstance(item, GenerateResult) else "progress"
                yield {"kind": kind, "data": item.model_dump()}

    @modal.method()
    def status(self) -> dict:
        # Reads no registry file: a Volume reload fails while files are open.
        return {
            "base_model": settings.BASE_MODEL, "loaded": self.service.loaded,
            "pipeline_calls": self.service.pipeline_calls, "queued": self.service.queued(),
        }


def reload_registry() -> None:
    """The InferenceService calls this between batches when a request names a version it cannot see yet."""
    registry_volume.reload()


# The registry's small operations run on CPU: they never wake a GPU, and a reload there cannot collide with
# a generation holding files open.


@app.function(volumes={str(REGISTRY_DIR): registry_volume}, timeout=REGISTRY_CALL_TIMEOUT_S)
def list_versions(subject: str | None = None) -> list[dict]:
    with boundary("listing versions"):
        registry_volume.reload()  # a warm container's view may predate the latest training
        return [version.model_dump() for version in registry().versions(subject)]


@app.function(volumes={str(REGISTRY_DIR): registry_volume}, secrets=[wandb_secret], timeout=REGISTRY_CALL_TIMEOUT_S)
def activate(subject: str, version: int) -> dict:
    with boundary("activating a version"):
        registry_volume.reload()
        chosen = registry().activate(subject, version)
        # Inference containers keep their view until a request names a version they lack; the bot sends
        # the version it activated, so the next request brings them up to date.
        registry_volume.commit()
    move_live_alias(WandbTrainingConfig.from_settings(settings), registry(), subject, version)  # never raises
    return chosen.model_dump()


@app.function(volumes={str(REGISTRY_DIR): registry_volume}, timeout=REGISTRY_CALL_TIMEOUT_S)
def export_lora(subject: str, version: int, fmt: str = "diffusers") -> bytes:
    """A version's LoRA file, converted on CPU when asked for kohya (a few MB: it comes back in the reply)."""
    with boundary("exporting a LoRA"):
        registry_volume.reload()
        from gpu_service.engine.export import export_lora as exported

        return exported(registry(), subject, version, fmt)


@app.function(
    gpu=settings.GPU_TYPE,
    timeout=TRAIN_TIMEOUT_S,
    volumes=VOLUMES,
    secrets=[huggingface_secret, wandb_secret],
)
def train(request: dict) -> dict:
    """Train and publish one version; progress goes to the progress Dict under the job id.

    Idempotent per job id: the call records its own id under the job's key first, so a bot that restarts
    finds it; a second call of a job whose first call still runs trains nothing and names that call.
    """
    logging.basicConfig(level=logging.INFO)
    with boundary("training"):
        parsed = TrainRequest.model_validate(request)
        running = claim_job(training_progress, parsed.job_id, modal.current_function_call_id(), call_running)
        if running is not None:
            return {FOLLOW_CALL: running}
        from gpu_service.engine.training_job import run_training_job

        with (SharedTrainingLease(training_progress, parsed.subject, parsed.job_id),
              deployment_slot(training_progress, parsed.job_id, settings.MAX_CONCURRENT_TRAININGS)):
            registry_volume.reload()  # a reused container must number the new version after the latest
            try:
                result = run_training_job(settings, parsed, on_progress=ProgressPublisher(parsed.job_id))
            finally:
                registry_volume.commit()  # the new version, or the checkpoints a retry resumes from
                wandb_volume.commit()  # the run, when it was logged offline
        return result.model_dump()


@app.function(volumes={str(HF_CACHE_DIR): hf_cache_volume}, secrets=[huggingface_secret], timeout=DOWNLOAD_TIMEOUT_S)
def download_models() -> list[str]:
    """Fetch the base model and the quality models into the Hugging Face cache Volume, on CPU, once:
    `make deploy` runs it, so no GPU container and no training waits for a download."""
    from huggingface_hub import snapshot_download

    logging.basicConfig(level=logging.INFO)
    with boundary("downloading the models"):
        fetched = fetch_models(settings, snapshot_download)
        hf_cache_volume.commit()
    return fetched


def fetch_models(values: Settings, download) -> list[str]:
    """Call `download` (huggingface_hub.snapshot_download's signature) for every hub model the engine loads;
    local directories are skipped. Returns the repo ids fetched."""
    wanted = [(values.BASE_MODEL, BASE_MODEL_FILES)]
    if values.QUALITY_ENABLED:
        wanted += [(values.QUALITY_CLIP_MODEL, QUALITY_MODEL_FILES), (values.QUALITY_DINO_MODEL, QUALITY_MODEL_FILES)]
    token = values.HUGGINGFACE_TOKEN.get_secret_value() if values.HUGGINGFACE_TOKEN else None
    fetched = []
    for repo_id, files in wanted:
        if Path(repo_id).is_dir():
            log.info("%s is a local directory: nothing to download", repo_id)
            continue
        download(repo_id, allow_patterns=files, ignore_patterns=SKIPPED_FILES, token=token)
        log.info("%s is in the Hugging Face cache", repo_id)
        fetched.append(repo_id)
    return fetched


# Helpers


def claim_job(store, job_id: str, call_id: str | None, running: Callable[[str], bool]) -> str | None:
    """Record `call_id` in `store` (the progress Dict) as the call that runs `job_id`, before any work.
    Returns the id of another call that still runs the job (hand over to it), else None (this one runs it)."""
    if call_id is None:  # in-process (`.local()`): there is no call to record
        return None
    key = training_call_key(job_id)
    if store.put(key, call_id, skip_if_exists=True):
        return None
    other = store.get(key)
    if other not in (None, call_id) and running(other):
        return other
    store.put(key, call_id)  # the earlier call ended (failed, cancelled, preempted): this one runs the job again
    return None


def call_running(call_id: str) -> bool:
    """Whether a spawned call has not ended yet: Modal answers "no result yet" with the built-in TimeoutError."""
    try:
        modal.FunctionCall.from_id(call_id).get(timeout=0)
    except TimeoutError:
        return True
    except Exception:  # its failure, a cancellation, or a call Modal no longer knows: it runs no more
        return False
    return False


@functools.cache
def registry() -> ModelRegistry:
    """One registry per process: its writers are serialized by a lock on the instance."""
    return ModelRegistry(settings.registry_dir)


class ProgressPublisher:
    """Puts each TrainProgress into the progress Dict, where the bot polls it. Never stops the training."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def __call__(self, progress: TrainProgress) -> None:
        try:
            training_progress.put(self.job_id, progress.model_dump(mode="json"))
        except Exception as error:  # progress is advisory; the result arrives by the call itself
            log.warning("could not publish progress of %s: %r", self.job_id, error)
