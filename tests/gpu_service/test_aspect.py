"""`aspect` in a request: its sizes, the rule that it excludes width/height, and the tiny model drawing it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from commands.validation import build
from gpu_service.errors import InvalidRequest
from gpu_service.schemas import GenerateRequest
from gpu_service.sizes import ASPECT_RATIOS, aspect_size
from tests.gpu_service.test_generator import load_generator

SD15_NATIVE, SD15_STEP = 512, 64


@pytest.mark.parametrize(("aspect", "size"), [
    ("square", (512, 512)), ("portrait", (448, 640)), ("landscape", (640, 448)), ("wide", (704, 384)),
])
def test_each_aspect_keeps_about_the_native_pixel_count_on_the_unets_grid(aspect, size):
    width, height = aspect_size(SD15_NATIVE, aspect, SD15_STEP)
    assert (width, height) == size and width % SD15_STEP == 0 == height % SD15_STEP
    assert 0.9 <= width * height / SD15_NATIVE**2 <= 1.1  # far under the 4x cap
    across, down = ASPECT_RATIOS[aspect]
    assert abs(width / height - across / down) < 0.1


def test_aspect_and_an_explicit_size_are_not_both_accepted_and_unknown_shapes_are_named():
    fields = {"prompt_prefix": "a", "subject": "qwerty"}
    with pytest.raises(InvalidRequest, match="either aspect or width/height"):
        build(GenerateRequest, **fields, aspect="wide", width=64)
    with pytest.raises(InvalidRequest, match="`aspect` must be 'square', 'portrait', 'landscape' or 'wide'"):
        build(GenerateRequest, **fields, aspect="tall")


def test_the_tiny_model_draws_each_aspect_at_its_size(tiny_model_dir, tmp_path):
    generator = load_generator(tiny_model_dir, tmp_path / "registry")
    sizes = {}
    for aspect in ASPECT_RATIOS:
        result = generator.generate(GenerateRequest(prompt_prefix="a", subject="qwerty", steps=2, seed=1,
                                                    aspect=aspect))
        sizes[aspect] = Image.open(io.BytesIO(result.images[0].png)).size
        assert sizes[aspect] == (result.width, result.height)
    assert sizes == {"square": (64, 64), "portrait": (56, 80), "landscape": (80, 56), "wide": (88, 48)}
