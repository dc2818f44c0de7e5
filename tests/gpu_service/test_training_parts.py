"""Training's small parts without a model: checkpoints on disk, data order, progress throttling."""

from __future__ import annotations

import pytest
import torch

from gpu_service.engine import checkpoints as ckpt
from gpu_service.engine.train_data import class_image_dir, sample_index, slug
from gpu_service.engine.train_loop import resume
from gpu_service.engine.train_progress import ProgressReporter


def save(staging, step, fingerprint="fp", keep=2):
    return ckpt.save_checkpoint(
        staging, step, lora={"w": torch.full((2,), float(step))}, state={"generator": torch.tensor([step])},
        info={"fingerprint": fingerprint, "recent_losses": [0.5]}, keep=keep,
    )


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    for step in (2, 4, 6):
        save(tmp_path, step)
    assert [c.step for c in ckpt.checkpoints(tmp_path)] == [6, 4]
    lora, state, info = ckpt.checkpoints(tmp_path)[0].load()
    assert torch.equal(lora["w"], torch.full((2,), 6.0)) and info["step"] == 6
    assert int(state["generator"][0]) == 6


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    save(tmp_path, 2)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill would: nothing after this line runs

    monkeypatch.setattr(ckpt.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 4)
    assert [c.step for c in ckpt.checkpoints(tmp_path)] == [2]
    monkeypatch.undo()
    save(tmp_path, 4)  # the half-written temp directory is replaced
    assert [c.step for c in ckpt.checkpoints(tmp_path)] == [4, 2]


def test_checkpoints_of_another_training_are_discarded_not_resumed(tmp_path):
    save(tmp_path, 2, fingerprint="other config")
    assert resume(trainer=None, staging=tmp_path, fingerprint="this config") is None
    assert ckpt.checkpoints(tmp_path) == []


def test_each_epoch_visits_every_image_once_in_a_seeded_order():
    first = [sample_index(7, c, 5, 0) for c in range(5)]
    second = [sample_index(7, c, 5, 0) for c in range(5, 10)]
    assert sorted(first) == sorted(second) == list(range(5))
    assert first == [sample_index(7, c, 5, 0) for c in range(5)]
    assert first != second or first != [sample_index(8, c, 5, 0) for c in range(5)]


def test_class_cache_dir_is_per_base_model_and_class_phrase(tmp_path):
    a = class_image_dir(tmp_path, "stable-diffusion-v1-5/stable-diffusion-v1-5", "dog")
    assert a.parent.parent == tmp_path and a.name.startswith("dog-")
    assert a != class_image_dir(tmp_path, "other/model", "dog") != class_image_dir(tmp_path, "other/model", "Dog")
    assert slug("A/B c") != slug("a-b-c") and slug("../..").startswith("x-")


def test_progress_is_throttled_but_state_changes_and_checkpoints_always_report():
    now = [0.0]
    seen = []
    reporter = ProgressReporter("job", seen.append, interval_s=1.0, clock=lambda: now[0])
    reporter.begin_steps(0)
    for step in range(1, 11):
        now[0] += 0.3
        reporter.step(step, 10, loss=1.0, lr=1e-4, force=step == 5)
    reporter.state("saving", step=10, total=10)
    assert [p.step for p in seen if p.state == "training"] == [1, 5, 9, 10]
    assert seen[-1].state == "saving"
    assert seen[1].eta_s == pytest.approx(0.3 * 5)
