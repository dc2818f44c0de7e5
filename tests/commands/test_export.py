"""/export without Discord: who may export which version, the file's name, and the upload limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commands.export import ExportTooLarge, export_lora
from commands.permissions import AdminPolicy, Caller, NotAuthorized
from commands.subjects import SubjectCatalog
from gpu_service.errors import InvalidRequest, SubjectNotFound
from gpu_service.schemas import ModelVersion
from tests.support.sleepy_gpu import SleepyGpu

ADMINS = AdminPolicy.of(operator_ids=[1])
OPERATOR = Caller(1)
ADMIN_700 = Caller(7, administrator=True, guild_id="700")
ADMIN_800 = Caller(8, administrator=True, guild_id="800")


def version(subject: str, number: int) -> ModelVersion:
    return ModelVersion(subject=subject, version=number, instance_phrase="a dog", class_phrase="dog",
                        base_model="sd", created_at=datetime(2025, 6, 1, tzinfo=UTC), active=number == 2)


@pytest.fixture
def gpu() -> SleepyGpu:
    gpu = SleepyGpu()
    gpu.versions = [version("qwerty", 1), version("qwerty", 2), version("dog@700", 1), version("dog@700", 2)]
    return gpu


async def test_an_admin_of_the_owning_server_gets_the_file_named_after_the_subject(gpu):
    exported = await export_lora(gpu, ADMINS, ADMIN_700, "dog@700", 1, "kohya")
    assert exported.filename == "dog-v1.safetensors"
    assert exported.data.startswith(b"kohya LoRA of dog@700 v1") and gpu.exported == [("dog@700", 1, "kohya")]


async def test_a_name_means_the_server_s_own_subject_else_the_global_one(gpu):
    catalog = SubjectCatalog(gpu)
    own = await export_lora(gpu, ADMINS, ADMIN_700, "dog", 2, catalog=catalog)
    assert own.filename == "dog-v2.safetensors" and gpu.exported == [("dog@700", 2, "diffusers")]
    with pytest.raises(SubjectNotFound, match="no trained subject `dog`"):  # server 800 has no dog
        await export_lora(gpu, ADMINS, ADMIN_800, "dog", 2, catalog=catalog)
    await export_lora(gpu, ADMINS, OPERATOR, "dog@700", 1, catalog=catalog)  # operators may give a key
    assert gpu.exported[-1] == ("dog@700", 1, "diffusers")


async def test_operators_export_global_subjects_in_the_stored_format_by_default(gpu):
    exported = await export_lora(gpu, ADMINS, OPERATOR, "qwerty", 2)
    assert exported.filename == "qwerty-v2.safetensors" and gpu.exported == [("qwerty", 2, "diffusers")]


@pytest.mark.parametrize(("caller", "subject", "error", "words"), [
    (ADMIN_700, "qwerty", NotAuthorized, "global subject"),  # only operators export global subjects
    (ADMIN_800, "dog@700", SubjectNotFound, "no trained subject"),  # another server's: not even named
    (Caller(9, guild_id="700"), "dog@700", NotAuthorized, "Only admins"),
])
async def test_others_are_refused_before_any_file_is_read(gpu, caller, subject, error, words):
    with pytest.raises(error, match=words):
        await export_lora(gpu, ADMINS, caller, subject, 1)
    assert gpu.exported == []


async def test_unknown_versions_and_formats_are_refused_with_a_sentence(gpu):
    with pytest.raises(SubjectNotFound, match="has no version 5 .it has v1, v2"):
        await export_lora(gpu, ADMINS, OPERATOR, "qwerty", 5)
    with pytest.raises(InvalidRequest, match="diffusers or kohya"):
        await export_lora(gpu, ADMINS, OPERATOR, "qwerty", 1, "ckpt")
    assert gpu.exported == []


async def test_a_file_over_the_upload_limit_is_refused_with_its_size(gpu):
    gpu.lora_bytes = 3 * 2**20
    with pytest.raises(ExportTooLarge, match=r"3\.0 MiB, over the 1\.0 MiB upload limit"):
        await export_lora(gpu, ADMINS, OPERATOR, "qwerty", 1, max_bytes=2**20)
    assert len((await export_lora(gpu, ADMINS, OPERATOR, "qwerty", 1, max_bytes=4 * 2**20)).data) == 3 * 2**20
