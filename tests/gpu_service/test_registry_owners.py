"""Server-owned subjects in the registry: keys `name@<guild id>` carry the owner into paths, so two servers can
each have a `dog`; a registry written before owners existed is read as global, with nothing moved or lost."""

from __future__ import annotations

import shutil
from pathlib import Path

from gpu_service.engine.adapters import adapter_name
from gpu_service.registry import WEIGHTS_NAME, ModelRegistry, VersionMetadata
from gpu_service.subjects import artifact_slug, subject_key, subject_name, subject_owner

MADE_BEFORE_OWNERS = Path(__file__).resolve().parents[1] / "fixtures" / "registry-made-before-owners"


def publish(registry: ModelRegistry, key: str, job_id: str):
    staging = registry.staging_dir(key, job_id)
    (staging / WEIGHTS_NAME).write_bytes(f"weights of {job_id}".encode())
    metadata = VersionMetadata(job_id=job_id, subject=key, instance_phrase="sks dog", class_phrase="dog",
                               base_model="tiny/sd")
    return registry.publish(key, job_id, metadata)


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_a_registry_made_before_owners_reads_as_global_and_keeps_working(tmp_path):
    """The copy was written by the code that had no owners (`make_registry` at commit ccaf8c7)."""
    root = tmp_path / "registry"
    shutil.copytree(MADE_BEFORE_OWNERS, root)
    before = files(root)
    registry = ModelRegistry(root)
    listed = [(v.subject, v.name, v.owner, v.version, v.active) for v in registry.versions()]
    assert listed == [("qwerty", "qwerty", "", 1, True), ("qwerty", "qwerty", "", 2, False),
                      ("rex", "rex", "", 1, True)]
    assert files(root) == before  # reading changed nothing on disk
    assert registry.read_weights("qwerty", 2) == b"weights of job2"
    assert publish(registry, "qwerty", "job4").version == 3  # numbering goes on
    assert registry.activate("rex", 1).active


def test_two_servers_each_have_a_dog_beside_the_global_one(tmp_path):
    registry = ModelRegistry(tmp_path)
    for key, job in (("dog", "j1"), ("dog@700", "j2"), ("dog@800", "j3"), ("dog@800", "j4")):
        publish(registry, key, job)
    assert [(v.subject, v.version) for v in registry.versions()] == [
        ("dog", 1), ("dog@700", 1), ("dog@800", 1), ("dog@800", 2)]
    assert (tmp_path / "subjects" / "dog@700" / "versions" / "1" / WEIGHTS_NAME).is_file()
    registry.activate("dog@800", 1)
    assert [v.active for v in registry.versions("dog@700")] == [True]  # untouched by server 800's rollback
    assert registry.active("dog").version == 1


def test_keys_names_owners_and_their_spellings():
    assert (subject_key("dog"), subject_key("dog", "700")) == ("dog", "dog@700")
    assert (subject_name("dog@700"), subject_owner("dog@700"), subject_owner("dog")) == ("dog", "700", "")
    assert (artifact_slug("dog"), artifact_slug("dog@700")) == ("dog", "dog.g700")


def test_adapter_names_stay_unique_with_owners():
    from datetime import UTC, datetime

    from gpu_service.schemas import ModelVersion

    def version(key: str):
        return ModelVersion(subject=key, version=1, instance_phrase="x", class_phrase="y", base_model="m",
                            created_at=datetime.now(UTC))

    keys = ["a_b", "a-b", "a@1", "a_a1", "a__b", "a_hb"]
    names = [adapter_name(version(key)) for key in keys]
    assert len(set(names)) == len(keys)
