"""The admin tools' use cases and texts without Discord: /models, /rollback, /status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.settings import BotSettings
from bot.wiring import make_app_services
from commands.admin import Rollback, StatusReport, models_text, rollback_text, status_text, wandb_link
from commands.context import RequestContext
from commands.jobs import JobRecord
from commands.train import RunningTraining
from commands.wandb_log import LogStats
from gpu_service.errors import InvalidRequest, SubjectNotFound
from gpu_service.schemas import (
    ImageSource,
    ModelVersion,
    QualityReport,
    ServiceStatus,
    TrainProgress,
    TrainRequest,
)
from tests.support.sleepy_gpu import SleepyGpu
from commands.permissions import Caller

OPERATOR = Caller.local_operator()


def version(number: int, active: bool = False, subject: str = "qwerty") -> ModelVersion:
    return ModelVersion(subject=subject, version=number, instance_phrase="qwerty dog", class_phrase="dog",
                        base_model="sd", created_at=datetime(2025, 6, 1, 12, 30, tzinfo=UTC), trained_by="ana",
                        steps=500, final_loss=0.1, wandb_url=f"https://wandb.ai/r/{number}", active=active)


@pytest.fixture
async def app(tmp_path):
    gpu = SleepyGpu()
    services = make_app_services(BotSettings(_env_file=None, DATA_DIR=tmp_path / "data", WANDB_MODE="disabled"), gpu)
    yield services, gpu
    await services.close()


def test_models_text_marks_the_live_version_and_counts_old_ones():
    text = models_text([version(n, active=n == 6) for n in range(1, 8)])
    lines = text.splitlines()
    assert lines[0] == '**qwerty** ("qwerty dog", a dog): v6 is live'
    assert lines[1] == "  … 2 older version(s)" and len(lines) == 7
    assert lines[2].startswith("  · v7") and lines[3].startswith("  ▶ v6 · trained 2025-06-01 12:30 UTC · by ana")
    assert "500 steps, loss 0.1000 · W&B <https://wandb.ai/r/6>" in lines[3]


def test_models_text_shows_each_version_s_scores_and_verdict_to_compare_before_a_rollback():
    scores = {"base": {"dino": 0.3, "clip_i": 0.6, "clip_t": 0.31}}
    v1 = version(1).model_copy(update={"quality": QualityReport(dino=0.4123, clip_i=0.71, clip_t=0.3049,
                                                                 verdict="underfit", **scores)})
    v2 = version(2, active=True).model_copy(update={"quality": QualityReport(dino=0.6677, clip_i=0.803,
                                                                             clip_t=0.305, verdict="ok", **scores)})
    lines = models_text([v1, v2, version(3)]).splitlines()
    assert "500 steps, loss 0.1000 · DINO 0.668, CLIP-I 0.803, CLIP-T 0.305: ok · W&B <" in lines[2]
    assert "DINO 0.412, CLIP-I 0.710, CLIP-T 0.305: underfit · W&B <" in lines[3]
    assert "DINO" not in lines[1]  # a version scored by no report shows none
    wide = models_text([v1.model_copy(update={"subject": f"subject{n}"}) for n in range(60)])
    assert max(len(line) for line in wide.splitlines()) <= 160


async def test_rollback_needs_a_known_subject_and_an_older_version(app):
    services, gpu = app
    with pytest.raises(SubjectNotFound):
        await services.admin.rollback(OPERATOR, "qwerty")
    await gpu.train(TrainRequest(job_id="j1", subject="qwerty", instance_phrase="q", class_phrase="d",
                                 images=(ImageSource(name="a"),)))
    with pytest.raises(InvalidRequest, match="no version older"):
        await services.admin.rollback(OPERATOR, "qwerty")
    same = await services.admin.rollback(OPERATOR, "qwerty", 1)
    assert rollback_text(same) == "`qwerty` v1 was already live; nothing changed."


def test_status_text_lists_trainings_here_and_those_another_process_runs():
    progress = TrainProgress(job_id="j1", state="training", step=50, total_steps=200, loss=0.25, eta_s=300)
    other = JobRecord.new("j2", "train", RequestContext("shell"), {"subject": "cat"}, state="running")
    report = StatusReport(ServiceStatus(backend="modal", reachable=False, warm=False, detail="no token"), 1, 2,
                          (RunningTraining("j1", "qwerty", progress),), (other,))
    assert status_text(report).splitlines() == [
        "GPU backend `modal`: NOT reachable, cold (no token)",
        "Queue: 1 running, 2 waiting",
        "Training `qwerty` (job `j1`): training, step 50/200 (25%), loss 0.2500, about 5 min left",
        "Training `cat` (job `j2`): running, as the shell recorded it (no progress here)",
    ]


def test_status_text_shows_warm_or_cold_and_the_last_cold_start():
    cold = ServiceStatus(backend="modal", reachable=True, warm=False, detail="0 container(s) up", last_cold_start_s=41.6)
    warm = cold.model_copy(update={"warm": True})
    assert status_text(StatusReport(cold, 0, 0, (), ())).splitlines()[0] == (
        "GPU backend `modal`: reachable, cold (last cold start 42 s) (0 container(s) up)"
    )
    assert "reachable, warm (last cold start 42 s)" in status_text(StatusReport(warm, 0, 0, (), ()))
    unmeasured = cold.model_copy(update={"last_cold_start_s": None})
    assert "cold (0 container(s) up)" in status_text(StatusReport(unmeasured, 0, 0, (), ()))


@pytest.mark.parametrize(
    ("url", "link"),
    [("https://wandb.ai/team/proj/runs/abc", "https://wandb.ai/team/proj/runs/abc"),
     ("https://wandb.example.com/team/proj/runs/abc", "https://wandb.example.com/team/proj/runs/abc"),
     ("/data/wandb/wandb/offline-run-20261204_101010-abc", None), ("http://wandb.ai/team/proj/runs/abc", None),
     ("https://user:secret@wandb.ai/runs/abc", None), ("https://wandb.ai/runs/a b", None),
     ("https://wandb.ai/runs/a>b", None), ("https:///runs/abc", None), ("", None), (None, None)],
)
def test_only_an_https_page_is_a_w_and_b_link(url, link):
    assert wandb_link(url) == link


def test_a_version_logged_offline_shows_no_link_and_no_path():
    offline = version(2).model_copy(update={"wandb_url": "/data/wandb/wandb/offline-run-20261204_101010-abc"})
    line = models_text([offline]).splitlines()[1]
    assert "W&B logged offline" in line and "/data" not in line and "<" not in line


async def test_status_answers_even_when_the_backend_does_not(app):
    services, gpu = app

    async def broken():
        raise ConnectionError("down")

    gpu.status = broken
    report = await services.admin.status()
    assert not report.service.reachable and "ConnectionError" in report.service.detail


def test_rollback_text_names_the_previous_version():
    assert rollback_text(Rollback(3, version(2, True))) == "`qwerty` v2 is live now (was v3): the next /qwerty uses it."


def test_status_text_lists_damaged_versions_and_the_generation_log():
    service = ServiceStatus(backend="local", reachable=True, warm=True, bad_versions=("qwerty v3: checksum mismatch",))
    stats = LogStats(rows_logged=7, rows_buffered=2, rows_dropped=1, rows_waiting=0, down=True)
    lines = status_text(StatusReport(service, 0, 0, (), (), stats)).splitlines()
    assert "Damaged LoRA, set aside: qwerty v3: checksum mismatch" in lines
    assert "W&B log: down, retrying; 7 row(s) logged, 0 waiting, 2 held while it was down, 1 dropped" in lines


async def test_status_reports_the_generation_logs_counts(app):
    services, _ = app
    report = await services.admin.status()
    assert report.generation_log == services.generation_log.stats()
    assert "W&B log: up; 0 row(s) logged" in status_text(report)
