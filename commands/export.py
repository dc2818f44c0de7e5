"""Export: a version's LoRA as a file an admin can take to AUTOMATIC1111, ComfyUI or diffusers.

Only admins of the subject's owner may export it (operators: every subject); a subject the caller's server
cannot see is "not found". As in /rollback, a name means the server's own subject when it has one, else the
global one; operators may also give a key (`dog@700`). Front ends attach or write `ExportedLora.data` as
`ExportedLora.filename`.
"""

from __future__ import annotations

from dataclasses import dataclass

from commands.errors import MemberError
from commands.permissions import AdminPolicy, Caller, visible
from commands.subjects import SubjectCatalog
from gpu_service.client import GpuClient
from gpu_service.errors import InvalidRequest, SubjectNotFound
from gpu_service.schemas import ModelVersion

FORMATS = ("diffusers", "kohya")  # as stored; and the layout AUTOMATIC1111 and ComfyUI load


class ExportTooLarge(MemberError):
    """The file is larger than the front end can deliver."""


@dataclass(frozen=True)
class ExportedLora:
    version: ModelVersion
    fmt: str
    data: bytes

    @property
    def filename(self) -> str:
        """`<subject>-v<n>.safetensors`, named after the subject as members know it."""
        name = getattr(self.version, "name", self.version.subject)
        return f"{name}-v{self.version.version}.safetensors"


async def export_lora(
    gpu: GpuClient, admins: AdminPolicy, caller: Caller, subject: str, version: int, fmt: str = "diffusers",
    *, catalog: SubjectCatalog | None = None, max_bytes: int | None = None,
) -> ExportedLora:
    """Check, then fetch the file. `catalog` turns a typed name into its key (without one, `subject` is the
    key); `max_bytes`: the most the front end can deliver (ExportTooLarge above it)."""
    if fmt not in FORMATS:
        raise InvalidRequest(f"The format must be {' or '.join(FORMATS)}.")
    key = subject
    if catalog is not None and not (admins.is_operator(caller) and "@" in subject):
        key = await catalog.resolve(subject, caller.guild_id)
    chosen = await _visible_version(gpu, admins, caller, subject, key, version)
    admins.require_owner(caller, subject, chosen.owner, "export")
    data = await gpu.export_lora(chosen.subject, chosen.version, fmt)
    if max_bytes is not None and len(data) > max_bytes:
        raise ExportTooLarge(
            f"The {fmt} file of `{subject}` v{version} is {_mib(len(data))}, over the {_mib(max_bytes)} "
            "upload limit here; the bot's operators can write it to a file with `make export`."
        )
    return ExportedLora(chosen, fmt, data)


async def _visible_version(
    gpu: GpuClient, admins: AdminPolicy, caller: Caller, subject: str, key: str, version: int
) -> ModelVersion:
    versions = await gpu.list_versions(key)
    everything = admins.is_operator(caller)
    if not versions or not visible(versions[0].owner, caller.guild_id, everything=everything):
        raise SubjectNotFound(f"There is no trained subject `{subject}`.")
    chosen = next((v for v in versions if v.version == version), None)
    if chosen is None:
        known = ", ".join(f"v{v.version}" for v in versions)
        raise SubjectNotFound(f"`{subject}` has no version {version} (it has {known}).")
    return chosen


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
