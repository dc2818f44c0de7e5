"""A full disk or a crash between placing a version and pointing `active` at it: re-running the same job
finishes the activation, reports the version live, and never makes a second version."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

from gpu_service.engine import training
from gpu_service.errors import TrainingFailed
from gpu_service.registry import ACTIVATION_PENDING, ModelRegistry
from tests.gpu_service.test_registry import listing, metadata, publish, stage
from tests.gpu_service.test_training import request, train

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def disk_full_at(file_name: str):
    """The first fsync of a temporary file written for `file_name` fails with ENOSPC, as a full disk would."""
    real_fsync = os.fsync
    pending = [1]

    def fsync(fd: int) -> None:
        written = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if pending[0] and written.startswith(f".{file_name}."):
            pending[0] -= 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        yield
    assert pending == [0], f"no write of {file_name} happened"


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


@pytest.mark.parametrize("full_at", ["active", "last_version", "metadata.json"])
def test_rerun_after_a_full_disk_makes_the_version_live_exactly_once(registry, full_at):
    publish(registry, "rex", "job1")
    stage(registry, "rex", "job2")
    with disk_full_at(full_at), pytest.raises(OSError) as raised:
        registry.publish("rex", "job2", metadata("rex", "job2"))
    assert raised.value.errno == errno.ENOSPC
    assert registry.active("rex").version == 1  # nothing went live half-way

    again = registry.publish("rex", "job2", metadata("rex", "job2"))

    assert (again.version, again.active) == (2, True)
    assert listing(registry) == [("rex", 1, False), ("rex", 2, True)]
    assert not (registry.version_dir("rex", 2) / ACTIVATION_PENDING).exists()


def test_resume_job_finishes_the_activation_without_the_staging(registry):
    publish(registry, "rex", "job1")
    stage(registry, "rex", "job2")
    with disk_full_at("active"), pytest.raises(OSError):
        registry.publish("rex", "job2", metadata("rex", "job2"))
    registry.discard_staging("rex", "job2")

    assert registry.find_job("rex", "job2").active is False  # a plain lookup changes nothing
    resumed = registry.resume_job("rex", "job2")
    assert (resumed.version, resumed.active) == (2, True)
    assert registry.active("rex") == resumed
    assert registry.resume_job("rex", "job2") == resumed  # and again: still one live version


def test_a_rollback_made_before_the_rerun_is_respected(registry):
    publish(registry, "rex", "job1")
    stage(registry, "rex", "job2")
    with disk_full_at("active"), pytest.raises(OSError):
        registry.publish("rex", "job2", metadata("rex", "job2"))
    registry.activate("rex", 1)  # an admin chose the live version since

    again = registry.publish("rex", "job2", metadata("rex", "job2"))
    assert (again.version, again.active) == (2, False)
    assert listing(registry) == [("rex", 1, True), ("rex", 2, False)]


KILLED_BEFORE_POINTING = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from gpu_service.registry import ModelRegistry
    from tests.gpu_service.test_registry import metadata, stage

    real_fsync = os.fsync

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".active."):
            os.kill(os.getpid(), signal.SIGKILL)
        real_fsync(fd)

    registry = ModelRegistry(Path(sys.argv[1]))
    stage(registry, "rex", "job2")
    os.fsync = fsync
    registry.publish("rex", "job2", metadata("rex", "job2"))
""")


def test_rerun_after_a_kill_between_placing_and_pointing(registry):
    publish(registry, "rex", "job1")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_POINTING, str(registry.root)], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert listing(registry) == [("rex", 1, True), ("rex", 2, False)]

    again = registry.publish("rex", "job2", metadata("rex", "job2"))
    assert (again.version, again.active) == (2, True)
    assert listing(registry) == [("rex", 1, False), ("rex", 2, True)]


@pytest.mark.slow
def test_training_rerun_after_a_full_disk_reports_the_version_live(tiny_model, class_cache, registry, monkeypatch):
    with disk_full_at("active"), pytest.raises(TrainingFailed, match="OSError"):
        train(request("job-full"), tiny_model, registry, class_cache)
    assert registry.active("rex") is None

    monkeypatch.setattr(training, "load_models", lambda *a, **k: pytest.fail("trained again"))
    again = train(request("job-full"), tiny_model, registry, class_cache)

    assert (again.version.version, again.version.active) == (1, True)
    assert registry.active("rex") == again.version
    assert [v.version for v in registry.versions("rex")] == [1]
    assert again.validation_images  # the re-run reports what the first run rendered


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from gpu_service.engine.tiny_model import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def class_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("class-cache")
