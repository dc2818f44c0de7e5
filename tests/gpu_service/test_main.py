"""`python -m gpu_service ...`: the names outside tests use to build the offline model and demo photos."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image


def test_tiny_model_command_writes_a_loadable_pipeline(tmp_path):
    target = tmp_path / "tiny"
    done = subprocess.run([sys.executable, "-m", "gpu_service", "tiny-model", str(target)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    index = json.loads((target / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(target)
    assert pipe.tokenizer.model_max_length == 77 and pipe.unet.config.sample_size == 32


def test_demo_images_command_writes_distinct_photos(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gpu_service", "demo-images", str(tmp_path), "--count", "3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    images = [Image.open(path) for path in done.stdout.split()]
    assert len(images) == 3 and len({image.tobytes() for image in images}) == 3
