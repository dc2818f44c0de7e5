"""The DreamBooth metrics against hand-computed cosines, the verdict's rules, and the tiny quality models."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_service.engine import quality
from gpu_service.engine.quality import Embeddings, Scores, verdict
from gpu_service.schemas import VERDICT_ADVICE, QualityReport

ROOT2 = math.sqrt(2)

# The math on fixed embeddings


def test_cosine_table_is_normalized_and_ordered_rows_by_columns():
    rows, columns = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 2.0], [3.0, 4.0]])
    expected = [[0.0, 3 / 5], [1 / ROOT2, 7 / (ROOT2 * 5)]]
    assert quality.cosine_table(rows, columns) == pytest.approx(np.array(expected))


def test_subject_fidelity_is_the_mean_over_every_generated_and_real_pair():
    generated, real = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 2.0], [3.0, 4.0]])
    per_image = quality.fidelity_per_image(generated, real)
    assert per_image == pytest.approx([(0 + 0.6) / 2, (1 / ROOT2 + 7 / (ROOT2 * 5)) / 2])
    # 0.574..., where unnormalized dot products would give 3.0 and swapped roles (per real photo) other rows
    assert per_image.mean() == pytest.approx((0 + 0.6 + 1 / ROOT2 + 7 / (ROOT2 * 5)) / 4)


def test_prompt_fidelity_pairs_each_image_with_its_own_prompt():
    images, texts = np.array([[1.0, 0.0], [0.0, 5.0]]), np.array([[2.0, 0.0], [1.0, 1.0]])
    assert quality.prompt_fidelity_per_image(images, texts) == pytest.approx([1.0, 1 / ROOT2])
    assert quality.prompt_fidelity_per_image(images, texts[::-1]) == pytest.approx([1 / ROOT2, 0.0])


def test_real_photos_similarity_leaves_out_each_photo_with_itself():
    real = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert quality.real_self_similarity(real) == pytest.approx((0 + 1 / ROOT2 + 1 / ROOT2) / 3)
    assert quality.real_self_similarity(real[:1]) is None


def test_dino_and_clip_i_read_their_own_embeddings_and_clip_t_the_clip_ones():
    generated = Embeddings(dino=np.array([[1.0, 0.0]]), clip=np.array([[0.0, 1.0, 0.0]]))
    real = Embeddings(dino=np.array([[1.0, 1.0]]), clip=np.array([[0.0, 1.0, 1.0]]))
    texts = np.array([[0.0, 3.0, 4.0]])
    (scores,) = quality.per_image_scores(generated, texts, real)
    assert (scores.dino, scores.clip_i, scores.clip_t) == pytest.approx((1 / ROOT2, 1 / ROOT2, 0.6))
    generated = Embeddings(dino=np.array([[1.0, 0.0]]), clip=np.array([[0.0, 0.0, 1.0]]))
    (scores,) = quality.per_image_scores(generated, texts, real)
    assert (scores.dino, scores.clip_i, scores.clip_t) == pytest.approx((1 / ROOT2, 1 / ROOT2, 0.8))


def test_mean_scores_average_each_metric():
    mean = quality.mean_scores([Scores(0.2, 0.4, 0.1), Scores(0.4, 0.8, 0.3)])
    assert (mean.dino, mean.clip_i, mean.clip_t) == pytest.approx((0.3, 0.6, 0.2))


# The verdict

BASE = Scores(dino=0.45, clip_i=0.70, clip_t=0.32)


@pytest.mark.parametrize(
    ("new", "real_dino", "expected"),
    [
        (Scores(0.66, 0.80, 0.31), 0.77, "ok"),  # the paper's DreamBooth figures
        (Scores(0.75, 0.88, 0.28), 0.77, "overfit"),  # as close to the photos as they are to each other
        (Scores(0.75, 0.88, 0.31), 0.77, "ok"),  # close to the photos but still follows the prompt
        (Scores(0.66, 0.80, 0.25), 0.77, "ok"),  # loses the prompt but is not a copy of the photos
        (Scores(0.47, 0.71, 0.32), 0.77, "underfit"),  # DINO barely above the base model's
        (Scores(0.47, 0.71, 0.25), 0.48, "overfit"),  # near photos that are unlike each other
        (Scores(0.75, 0.88, 0.28), None, "overfit"),  # one photo: the paper's 0.774 stands in
    ],
)
def test_verdict_rules(new, real_dino, expected):
    assert verdict(new, BASE, real_dino) == expected


def test_verdict_thresholds_come_from_the_papers_table():
    assert quality.NEAR_REAL_DINO == pytest.approx((0.774 - 0.668) / 2)
    assert quality.CLIP_T_DROP == pytest.approx((0.305 - 0.255) / 2)
    assert quality.MIN_DINO_GAIN == pytest.approx((0.668 - 0.569) / 2)
    just_below = Scores(BASE.dino + quality.MIN_DINO_GAIN - 1e-6, 0.7, 0.32)
    assert verdict(just_below, BASE, 0.9) == "underfit"
    assert verdict(Scores(BASE.dino + quality.MIN_DINO_GAIN + 1e-6, 0.7, 0.32), BASE, 0.9) == "ok"


@pytest.mark.parametrize(("name", "words"), [
    ("overfit", "fewer steps"), ("overfit", "more varied photos"), ("underfit", "more steps"), ("ok", "Looks good"),
])
def test_each_verdict_says_what_to_do(name, words):
    assert words in VERDICT_ADVICE[name]
    report = QualityReport(dino=0.5, clip_i=0.6, clip_t=0.3, base={"dino": 0.4, "clip_i": 0.5, "clip_t": 0.3},
                           verdict=name)
    assert words in report.advice


# The tiny models, through the same from_pretrained code as the real ones


@pytest.fixture(scope="module")
def tiny_quality(tmp_path_factory):
    done = subprocess.run(
        [sys.executable, "-m", "gpu_service", "tiny-quality-models", str(tmp_path_factory.mktemp("quality"))],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    found = dict(line.split("=", 1) for line in done.stdout.split())
    return found["QUALITY_CLIP_MODEL"], found["QUALITY_DINO_MODEL"]


@pytest.fixture(scope="module")
def models(tiny_quality):
    return quality.QualityModels(*tiny_quality, device="cpu")


def picture(seed: int, size=(64, 48)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def by_hand(image: Image.Image, side: int, mean, std, resample, crop: bool) -> torch.Tensor:
    """Resize (shortest edge, then center crop, for CLIP; straight to side x side for ViT) and normalize."""
    if crop:
        scale = side / min(image.size)
        resized = image.resize((int(image.width * scale), int(image.height * scale)), resample)
        left, top = (resized.width - side) // 2, (resized.height - side) // 2
        resized = resized.crop((left, top, left + side, top + side))
    else:
        resized = image.resize((side, side), resample)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    pixels = (pixels - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def test_dino_embedding_is_the_cls_token_of_imagenet_normalized_pixels(models):
    image = picture(1)
    pixels = by_hand(image, 32, quality_mean("dino"), quality_std("dino"), Image.Resampling.BILINEAR, crop=False)
    with torch.no_grad():
        expected = models.dino(pixel_values=pixels).last_hidden_state[0, 0].numpy()
    assert models.embed_images([image]).dino[0] == pytest.approx(expected, abs=2e-3)


def test_clip_embeddings_use_clips_crop_and_normalization(models):
    image = picture(2)
    pixels = by_hand(image, 32, quality_mean("clip"), quality_std("clip"), Image.Resampling.BICUBIC, crop=True)
    with torch.no_grad():
        expected = quality._features(models.clip.get_image_features(pixel_values=pixels))[0].numpy()
    assert models.embed_images([image]).clip[0] == pytest.approx(expected, abs=2e-3)
    texts = models.embed_texts(["a photo of a qwerty dog", "a qwerty dog in the snow"])
    assert texts.shape == (2, models.clip.config.projection_dim)
    assert not np.allclose(texts[0], texts[1])


def quality_mean(kind: str):
    from gpu_service.engine.tiny_quality import IMAGENET_MEAN

    return IMAGENET_MEAN if kind == "dino" else (0.48145466, 0.4578275, 0.40821073)  # CLIP's published mean


def quality_std(kind: str):
    from gpu_service.engine.tiny_quality import IMAGENET_STD

    return IMAGENET_STD if kind == "dino" else (0.26862954, 0.26130258, 0.27577711)


def test_a_photo_scored_against_itself_has_full_fidelity(models):
    photos = [picture(seed) for seed in range(3)]
    real = models.embed_images(photos)
    (scores, *_) = quality.per_image_scores(
        Embeddings(real.dino[:1], real.clip[:1]), models.embed_texts(["x"]), Embeddings(real.dino[:1], real.clip[:1])
    )
    assert (scores.dino, scores.clip_i) == pytest.approx((1.0, 1.0))
