"""The model registry on a tmp directory: versions, the active pointer, crashes and races."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpu_service.errors import InvalidRequest, SubjectNotFound
from gpu_service.registry import METADATA_NAME, WEIGHTS_NAME, DamagedWeights, ModelRegistry, VersionMetadata


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path)


def metadata(subject: str, job_id: str, **changes) -> VersionMetadata:
    fields = {
        "job_id": job_id,
        "subject": subject,
        "instance_phrase": f"{subject} dog",
        "class_phrase": "dog",
        "base_model": "tiny/sd",
        "hyperparameters": {"rank": 4, "lr": 1e-4},
        "steps": 2,
        "final_loss": 0.25,
        "image_sha256": ["ab" * 32],
        "trained_by": "tester",
    }
    return VersionMetadata(**fields | changes)


def stage(registry: ModelRegistry, subject: str, job_id: str) -> Path:
    """What a trainer leaves behind: weights at the top, a checkpoint in a subfolder."""
    staging = registry.staging_dir(subject, job_id)
    (staging / WEIGHTS_NAME).write_bytes(f"weights of {job_id}".encode())
    (staging / "checkpoints" / "step-1").mkdir(parents=True)
    (staging / "checkpoints" / "step-1" / "optimizer.bin").write_bytes(b"big")
    return staging


def publish(registry: ModelRegistry, subject: str, job_id: str, **kwargs):
    stage(registry, subject, job_id)
    return registry.publish(subject, job_id, metadata(subject, job_id), **kwargs)


def listing(registry: ModelRegistry, subject: str | None = "rex") -> list[tuple[str, int, bool]]:
    return [(v.subject, v.version, v.active) for v in registry.versions(subject)]


def test_first_publish_is_version_1_and_active(registry):
    version = publish(registry, "rex", "job1")
    assert (version.version, version.active, version.instance_phrase) == (1, True, "rex dog")
    assert registry.active("rex") == version
    assert registry.subjects() == ["rex"]


def test_second_publish_becomes_active(registry):
    publish(registry, "rex", "job1")
    assert publish(registry, "rex", "job2").version == 2
    assert registry.active("rex").version == 2
    assert listing(registry) == [("rex", 1, False), ("rex", 2, True)]


def test_activate_rolls_back_and_forward(registry):
    publish(registry, "rex", "job1")
    publish(registry, "rex", "job2")
    assert registry.activate("rex", 1).active
    assert listing(registry) == [("rex", 1, True), ("rex", 2, False)]
    registry.activate("rex", 2)
    assert registry.active("rex").version == 2


def test_publish_without_activate_keeps_the_live_version(registry):
    publish(registry, "rex", "job1")
    assert not publish(registry, "rex", "job2", activate=False).active
    assert registry.active("rex").version == 1


def test_versions_of_all_subjects_are_grouped_oldest_first(registry):
    publish(registry, "zed", "job1")
    publish(registry, "rex", "job2")
    publish(registry, "rex", "job3")
    assert listing(registry, None) == [("rex", 1, False), ("rex", 2, True), ("zed", 1, True)]
    assert registry.subjects() == ["rex", "zed"]


def test_unknown_subject_has_no_versions(registry):
    assert registry.versions("ghost") == []
    assert registry.active("ghost") is None
    assert registry.subjects() == []


def test_same_job_published_twice_makes_one_version(registry):
    first = publish(registry, "rex", "job1")
    again = publish(registry, "rex", "job1")
    assert again == first
    assert listing(registry) == [("rex", 1, True)]
    assert registry.find_job("rex", "job1") == first
    assert registry.find_job("rex", "other") is None


def test_replayed_job_does_not_undo_a_rollback_and_cleans_its_staging(registry):
    publish(registry, "rex", "job1")
    publish(registry, "rex", "job2")
    registry.activate("rex", 1)
    staging = stage(registry, "rex", "job2")
    assert registry.publish("rex", "job2", metadata("rex", "job2")).version == 2
    assert registry.active("rex").version == 1
    assert not staging.exists()


def test_publish_keeps_outputs_and_metadata_drops_checkpoints_and_staging(registry):
    staging = stage(registry, "rex", "job1")
    registry.publish("rex", "job1", metadata("rex", "job1"))
    folder = registry.version_dir("rex", 1)
    assert sorted(p.name for p in folder.iterdir()) == [METADATA_NAME, WEIGHTS_NAME]
    assert (folder / WEIGHTS_NAME).read_bytes() == b"weights of job1"
    assert VersionMetadata.model_validate_json((folder / METADATA_NAME).read_text()).job_id == "job1"
    assert not staging.exists()


def test_publish_refuses_staging_without_weights(registry):
    registry.staging_dir("rex", "job1")
    with pytest.raises(InvalidRequest, match=WEIGHTS_NAME):
        registry.publish("rex", "job1", metadata("rex", "job1"))
    assert registry.versions("rex") == []


def test_publish_refuses_metadata_of_another_job(registry):
    stage(registry, "rex", "job1")
    with pytest.raises(InvalidRequest, match="job2"):
        registry.publish("rex", "job1", metadata("rex", "job2"))


def test_staging_dir_is_stable_per_job_and_discardable(registry):
    first = registry.staging_dir("rex", "job1")
    (first / "checkpoint").write_text("resume me")
    assert registry.staging_dir("rex", "job1") == first
    assert (first / "checkpoint").exists()
    registry.discard_staging("rex", "job1")
    assert not first.exists()
    registry.discard_staging("rex", "job1")  # discarding twice is fine


def test_delete_inactive_version(registry):
    publish(registry, "rex", "job1")
    publish(registry, "rex", "job2")
    registry.delete("rex", 1)
    assert listing(registry) == [("rex", 2, True)]
    with pytest.raises(SubjectNotFound):
        registry.version_dir("rex", 1)


def test_delete_active_version_is_refused(registry):
    publish(registry, "rex", "job1")
    with pytest.raises(InvalidRequest, match="active"):
        registry.delete("rex", 1)
    assert listing(registry) == [("rex", 1, True)]


def test_deleted_version_number_is_never_reused(registry):
    publish(registry, "rex", "job1")
    publish(registry, "rex", "job2")
    registry.activate("rex", 1)
    registry.delete("rex", 2)
    assert publish(registry, "rex", "job3").version == 3


@pytest.mark.parametrize("version", [0, -1, 7])
def test_missing_version_is_subject_not_found(registry, version):
    publish(registry, "rex", "job1")
    for call in (registry.version_dir, registry.activate, registry.delete):
        with pytest.raises(SubjectNotFound, match=str(version)):
            call("rex", version)


@pytest.mark.parametrize("subject", ["../x", "A", "", "a" * 40, "a/b", "-a", "a\n"])
def test_bad_subject_names_are_refused(registry, tmp_path, subject):
    calls = [
        lambda: registry.versions(subject),
        lambda: registry.active(subject),
        lambda: registry.staging_dir(subject, "job1"),
        lambda: registry.version_dir(subject, 1),
        lambda: registry.activate(subject, 1),
        lambda: registry.delete(subject, 1),
        lambda: registry.discard_staging(subject, "job1"),
        lambda: registry.find_job(subject, "job1"),
    ]
    for call in calls:
        with pytest.raises(InvalidRequest, match="subject"):
            call()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("job_id", ["../x", "", "a/b", "x" * 65])
def test_bad_job_ids_are_refused(registry, job_id):
    with pytest.raises(InvalidRequest, match="job id"):
        registry.staging_dir("rex", job_id)


def test_crash_mid_publish_leaves_state_intact(registry, tmp_path, monkeypatch):
    publish(registry, "rex", "job1")
    stage(registry, "rex", "job2")
    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", _crash)
        with pytest.raises(OSError, match="killed"):
            registry.publish("rex", "job2", metadata("rex", "job2"))

    fresh = ModelRegistry(tmp_path)
    assert listing(fresh) == [("rex", 1, True)]
    assert fresh.find_job("rex", "job2") is None
    retried = fresh.publish("rex", "job2", metadata("rex", "job2"))
    assert (retried.version, retried.active) == (2, True)
    assert listing(fresh) == [("rex", 1, False), ("rex", 2, True)]


def _crash(src, dst):
    raise OSError("killed between building and renaming")


def test_state_lives_on_disk(registry, tmp_path):
    publish(registry, "rex", "job1")
    publish(registry, "rex", "job2")
    registry.activate("rex", 1)
    assert ModelRegistry(tmp_path).active("rex").version == 1


def test_active_pointer_to_a_missing_version_means_none(registry, tmp_path, caplog):
    publish(registry, "rex", "job1")
    (tmp_path / "subjects" / "rex" / "active").write_text("9\n")
    with caplog.at_level(logging.WARNING, logger="gpu_service.registry"):
        assert registry.active("rex") is None
    assert "version 9" in caplog.text
    assert listing(registry) == [("rex", 1, False)]


def test_listing_skips_hidden_corrupt_and_incomplete_versions(registry, tmp_path):
    publish(registry, "rex", "job1")
    versions = tmp_path / "subjects" / "rex" / "versions"
    (versions / ".publish-half").mkdir()
    (versions / "2").mkdir()  # no metadata.json yet
    (versions / "3").mkdir()
    (versions / "3" / METADATA_NAME).write_text("{not json")
    (versions / "04").mkdir()
    assert listing(registry) == [("rex", 1, True)]


def test_concurrent_publishes_get_distinct_numbers(registry):
    jobs = [f"job{i}" for i in range(4)]
    for job in jobs:
        stage(registry, "rex", job)
    start = threading.Barrier(len(jobs))

    def run(job: str) -> int:
        start.wait(timeout=10)
        return registry.publish("rex", job, metadata("rex", job)).version

    with ThreadPoolExecutor(len(jobs)) as pool:
        numbers = list(pool.map(run, jobs))
    assert sorted(numbers) == [1, 2, 3, 4]
    assert {registry.find_job("rex", job).version for job in jobs} == {1, 2, 3, 4}


def test_metadata_created_at_is_utc():
    assert metadata("rex", "job1").created_at.tzinfo == UTC
    local = datetime.fromisoformat("2024-05-01T12:00:00+02:00")
    assert metadata("rex", "job1", created_at=local).created_at.hour == 10


def test_publish_records_the_weights_size_and_checksum(registry):
    publish(registry, "rex", "job1")
    directory = registry.version_dir("rex", 1)
    meta = VersionMetadata.model_validate_json((directory / METADATA_NAME).read_text())
    data = b"weights of job1"
    assert (meta.weights_bytes, meta.weights_sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert registry.read_weights("rex", 1) == data


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: path.write_bytes(b"weights of"), "truncated (10 of 15 bytes)"),
        (lambda path: path.write_bytes(b"weights of job2"), "checksum mismatch"),
        (lambda path: path.unlink(), "weights file missing"),
    ],
)
def test_damaged_weights_are_refused_with_the_reason(registry, damage, reason):
    publish(registry, "rex", "job1")
    publish(registry, "rex", "job2")
    damage(registry.version_dir("rex", 1) / WEIGHTS_NAME)
    with pytest.raises(DamagedWeights, match=re.escape(reason)):
        registry.read_weights("rex", 1)
    assert registry.damaged_versions() == [f"rex v1: {reason}"]
