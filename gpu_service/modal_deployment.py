"""The Modal deployment as both sides name it: `modal_app.py` creates these objects, the client
(`gpu_service/modal_client.py`) looks them up, and Modal's errors become ours here.

Importing this module imports modal but no torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import modal
import modal.exception

from gpu_service.errors import GpuServiceError, GpuTimeout, MissingCredentials, ModelNotDeployed, RemoteError

log = logging.getLogger(__name__)

MINUTES = 60
HOURS = 60 * MINUTES
TRAIN_TIMEOUT_S = 2 * HOURS  # per attempt on Modal
FOLLOW_CALL = "follow_call"  # a train call's answer when another call already runs its job: follow that one


@dataclass(frozen=True)
class ModalNames:
    """Every name shared by `modal_app.py` (which creates them) and this client (which looks them up)."""

    app: str
    inference: str = "Inference"
    train: str = "train"
    list_versions: str = "list_versions"
    activate: str = "activate"
    export_lora: str = "export_lora"

    @property
    def registry_volume(self) -> str:
        return f"{self.app}-registry"

    @property
    def hf_cache_volume(self) -> str:
        return f"{self.app}-hf-cache"

    @property
    def wandb_volume(self) -> str:
        return f"{self.app}-wandb"

    @property
    def huggingface_secret(self) -> str:
        return f"{self.app}-huggingface"

    @property
    def wandb_secret(self) -> str:
        return f"{self.app}-wandb"

    @property
    def training_progress(self) -> str:
        return f"{self.app}-training-progress"


def training_call_key(job_id: str) -> str:
    """Where a training's call records its own id in the progress Dict, so a restart finds it by job id."""
    return f"call:{job_id}"


class ModalLookup(Protocol):
    """Where the client finds the deployed objects; tests pass stand-ins with the same `.aio` surface."""

    def inference(self) -> Any:
        """An instance of the inference class: `.generate.remote.aio`, `.generate_stream.remote_gen.aio`."""

    def function(self, name: str) -> Any:
        """A deployed function: `.remote.aio`, `.spawn.aio`."""

    def function_call(self, call_id: str) -> Any:
        """A spawned call: `.get.aio(timeout=0)`, `.cancel.aio()`, `.object_id`."""

    def progress_store(self) -> Any:
        """The training-progress Dict: `.get.aio(key)` (progress by job id, and each job's call id)."""


class DeployedApp:
    """The real lookups. All lazy: nothing touches the network until a call is made.

    Handles are made per call, not cached: one extra lookup per call is cheap next to a generation, and a
    handle never outlives a redeploy or a failed first lookup.
    """

    def __init__(self, names: ModalNames) -> None:
        self.names = names

    def inference(self) -> Any:
        return modal.Cls.from_name(self.names.app, self.names.inference)()

    def function(self, name: str) -> Any:
        return modal.Function.from_name(self.names.app, name)

    def function_call(self, call_id: str) -> Any:
        return modal.FunctionCall.from_id(call_id)

    def progress_store(self) -> Any:
        return modal.Dict.from_name(self.names.training_progress, create_if_missing=True)


def map_error(error: BaseException, app_name: str) -> GpuServiceError:
    """What a failure of a Modal call means for the caller, as one of our error types."""
    if isinstance(error, GpuServiceError):
        return error  # raised by the GPU side on purpose: its message is for the user
    if isinstance(error, (modal.exception.AuthError, modal.exception.PermissionDeniedError)):
        return MissingCredentials(
            "Modal has no valid credentials here: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, "
            "or run `modal token new`."
        )
    if isinstance(error, modal.exception.NotFoundError):
        return ModelNotDeployed(f"The Modal app '{app_name}' is not deployed (or is incomplete): run `make deploy`.")
    if isinstance(error, modal.exception.TimeoutError):
        return GpuTimeout("The GPU job ran past its time limit on Modal.")
    if isinstance(error, modal.exception.ConnectionError):
        return RemoteError("Modal could not be reached from here; try again shortly.")
    log.warning("Modal call failed: %r", error)
    return RemoteError(f"The GPU service failed ({error.__class__.__name__}).")
