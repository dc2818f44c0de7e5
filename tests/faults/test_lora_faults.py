"""Damaged LoRA files: a truncated or corrupt version falls back to the one before it, is listed as bad, and
a file truncated under a running process never takes it down."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpu_service.engine.adapters import AdapterSwitcher
from gpu_service.engine.generator import Generator
from gpu_service.engine.service import InferenceService
from gpu_service.errors import RemoteError
from gpu_service.registry import METADATA_NAME, WEIGHTS_NAME, ModelRegistry
from gpu_service.schemas import GenerateRequest
from tests.gpu_service.test_adapters import publish_random_lora

REPO = Path(__file__).resolve().parents[2]


def fresh_generator(registry: ModelRegistry, model_dir: Path) -> Generator:
    return Generator.load(str(model_dir), adapters_factory=lambda pipe: AdapterSwitcher(pipe, registry),
                          default_subject="qwerty", default_phrase="qwerty dog")


def render(generator: Generator, **fields):
    return generator.generate(GenerateRequest(prompt_prefix="a photo of a", subject="rex", seed=5, steps=2, **fields))


def weights(registry: ModelRegistry, version: int) -> Path:
    return registry.version_dir("rex", version) / WEIGHTS_NAME


@pytest.fixture
def two_versions(tmp_path, tiny_model_dir):
    """rex v1 and v2 published; returns the registry and v1's image, rendered before anything was damaged."""
    registry = ModelRegistry(tmp_path / "registry")
    publish_random_lora(registry, tiny_model_dir, "rex", "rex dog", seed=1)
    publish_random_lora(registry, tiny_model_dir, "rex", "rex dog", seed=2)
    v1_png = render(fresh_generator(registry, tiny_model_dir), subject_version=1).images[0].png
    return registry, v1_png


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 10] ^= 0xFF  # inside the tensor data: the header still parses
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("damage", "reason"), [(truncate, "truncated"), (flip_a_byte, "checksum mismatch")])
def test_damaged_live_version_falls_back_to_the_previous_good_one(two_versions, tiny_model_dir, damage, reason):
    registry, v1_png = two_versions
    size = weights(registry, 2).stat().st_size
    damage(weights(registry, 2))
    generator = fresh_generator(registry, tiny_model_dir)

    result = render(generator)

    assert (result.version, result.damaged_version, result.base_fallback) == (1, 2, False)
    assert result.images[0].png == v1_png
    [listed] = generator.adapters.bad_versions()
    assert listed.startswith(f"rex v2: {reason}")
    assert registry.damaged_versions() == [listed]
    if damage is truncate:
        assert listed == f"rex v2: truncated ({size // 2} of {size} bytes)"


def test_a_request_naming_the_damaged_version_is_answered_by_the_one_before(two_versions, tiny_model_dir):
    registry, v1_png = two_versions
    flip_a_byte(weights(registry, 2))
    result = render(fresh_generator(registry, tiny_model_dir), subject_version=2)
    assert (result.version, result.damaged_version) == (1, 2)
    assert result.images[0].png == v1_png


def test_a_repaired_file_is_used_again(two_versions, tiny_model_dir):
    registry, _ = two_versions
    path = weights(registry, 2)
    good = path.read_bytes()
    truncate(path)
    generator = fresh_generator(registry, tiny_model_dir)
    assert render(generator).version == 1
    path.write_bytes(good)
    result = render(generator)
    assert (result.version, result.damaged_version) == (2, None)
    assert generator.adapters.bad_versions() == []


def test_no_good_version_left_is_a_clear_error(two_versions, tiny_model_dir):
    registry, _ = two_versions
    truncate(weights(registry, 1))
    flip_a_byte(weights(registry, 2))
    generator = fresh_generator(registry, tiny_model_dir)
    with pytest.raises(RemoteError, match="damaged and no earlier version of it loads"):
        render(generator)
    assert [line.split(":")[0] for line in generator.adapters.bad_versions()] == ["rex v1", "rex v2"]


def test_version_published_without_a_checksum_is_trusted_until_it_does_not_parse(two_versions, tiny_model_dir):
    registry, v1_png = two_versions
    metadata = registry.version_dir("rex", 2) / METADATA_NAME
    text = metadata.read_text()
    stripped = "\n".join(line for line in text.splitlines() if '"weights_' not in line)
    metadata.write_text(stripped)
    assert render(fresh_generator(registry, tiny_model_dir)).version == 2  # older metadata: accepted as it is

    truncate(weights(registry, 2))
    generator = fresh_generator(registry, tiny_model_dir)
    result = render(generator)
    assert (result.version, result.damaged_version) == (1, 2)
    assert generator.adapters.bad_versions()[0].startswith("rex v2: unreadable")
    assert registry.damaged_versions() == []  # without a checksum only loading can tell


TRUNCATE_WHILE_SERVING = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from gpu_service.engine.adapters import AdapterSwitcher
    from gpu_service.engine.generator import Generator
    from gpu_service.registry import WEIGHTS_NAME, ModelRegistry
    from gpu_service.schemas import GenerateRequest

    model_dir, registry = sys.argv[1], ModelRegistry(Path(sys.argv[2]))
    generator = Generator.load(model_dir, adapters_factory=lambda pipe: AdapterSwitcher(pipe, registry),
                               default_subject="qwerty", default_phrase="qwerty dog")
    request = GenerateRequest(prompt_prefix="a photo of a", subject="rex", seed=5, steps=2)
    before = generator.generate(request)
    served = [registry.version_dir("rex", 1) / WEIGHTS_NAME, *Path(model_dir).rglob("*.safetensors")]
    for path in served:
        os.truncate(path, 64)
    for _ in range(3):
        after = generator.generate(request)
        assert after.version == 1 and after.images[0].png == before.images[0].png
    print("still serving", len(served), "truncated files")
""")


@pytest.mark.slow
def test_truncating_files_under_a_running_generator_never_kills_it(tmp_path, tiny_model_dir):
    model_dir = tmp_path / "model"
    subprocess.run(["cp", "-r", str(tiny_model_dir), str(model_dir)], check=True)
    registry = ModelRegistry(tmp_path / "registry")
    publish_random_lora(registry, model_dir, "rex", "rex dog", seed=1)
    env = os.environ | {"PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    finished = subprocess.run(
        [sys.executable, "-c", TRUNCATE_WHILE_SERVING, str(model_dir), str(registry.root)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert finished.returncode == 0, f"exit {finished.returncode} (-7 is SIGBUS):\n{finished.stderr[-3000:]}"
    assert "still serving" in finished.stdout


def test_service_warms_the_fallback_and_reports_the_damaged_version(two_versions, tiny_model_dir):
    registry, v1_png = two_versions
    flip_a_byte(weights(registry, 2))
    service = InferenceService(base_model=str(tiny_model_dir), registry=registry, default_subject="qwerty",
                               default_phrase="qwerty dog")
    try:
        service.load()
        assert service.bad_versions() == ["rex v2: checksum mismatch"]
        result = service.generate(GenerateRequest(prompt_prefix="a photo of a", subject="rex", seed=5, steps=2))
    finally:
        service.close()
    assert (result.version, result.damaged_version, result.images[0].png) == (1, 2, v1_png)
