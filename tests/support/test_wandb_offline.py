"""Real wandb offline logging, read back with tests.support.wandb_offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb
from PIL import Image
from wandb.proto import wandb_internal_pb2 as pb

from tests.support.wandb_offline import OfflineRun, read_offline_runs, read_records

PROMPTS = ["a red fox", "ein Fuchs 🦊 im Schnee", "x" * 300]
CONFIG = {"model": "sd-turbo", "steps": 4, "guidance": 0.0, "sizes": [512, 768]}
LOSSES = [1.0, 0.5, 0.25]


def make_image(i: int) -> Image.Image:
    im = Image.new("RGB", (16, 8), (10 * i, 200, 30))
    im.putpixel((3, 5), (1, 2, 3 + i))  # one odd pixel per image
    return im


def wandb_env(mp: pytest.MonkeyPatch, root: Path) -> dict[str, Path]:
    dirs = {k: root / k.lower() for k in
            ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")}
    for key, path in dirs.items():
        path.mkdir()
        mp.setenv(key, str(path))
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_CONSOLE", "off")
    return dirs


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as mp:
        dirs = wandb_env(mp, root)
        wandb.teardown()  # forget settings from any earlier run in this process
        try:
            gen = wandb.init(project="qwerty", job_type="generate", name="gen-1",
                             config=CONFIG)
            table = wandb.Table(columns=["prompt", "image", "seed"], log_mode="INCREMENTAL")
            for i, prompt in enumerate(PROMPTS):
                table.add_data(prompt, wandb.Image(make_image(i)), 100 + i)
                gen.log({"generations": table, "loss": LOSSES[i]})
            gen.log({"preview": wandb.Image(make_image(7), caption="hi")})
            gen.summary["notes"] = "n" * 70_000  # one record spanning 3 log blocks
            weights = root / "weights.bin"
            weights.write_bytes(b"\x00weights\xff")
            model = wandb.Artifact("sd-model", type="model", metadata={"rev": 3})
            model.add_file(str(weights))
            gen.log_artifact(model, aliases=["latest", "prod"])
            gen.finish()

            serve = wandb.init(project="qwerty", job_type="serve")
            with pytest.raises(TypeError, match="offline"):  # wandb 0.31 refuses this offline
                serve.use_artifact("sd-model:latest")
            # The only way to put a use record into an offline log (private API).
            serve._interface._publish_use_artifact(
                pb.UseArtifactRecord(id=model._client_id, type="model", name="sd-model:latest"))
            serve.finish()
        finally:
            wandb.teardown()
    return dirs


@pytest.fixture()
def runs(logged) -> list[OfflineRun]:
    return read_offline_runs(logged["WANDB_DIR"], logged["WANDB_DATA_DIR"])


def test_runs_in_order_with_metadata(runs):
    gen, serve = runs
    assert (gen.project, gen.job_type, gen.name) == ("qwerty", "generate", "gen-1")
    assert (serve.project, serve.job_type) == ("qwerty", "serve")
    assert gen.exit_code == serve.exit_code == 0
    assert gen.run_dir.name.endswith(gen.run_id)


def test_config_history_summary(runs):
    gen = runs[0]
    assert gen.config == CONFIG
    assert gen.values("loss") == LOSSES
    assert [row["_step"] for row in gen.history] == [0, 1, 2, 3]
    assert gen.summary["loss"] == LOSSES[-1]
    assert gen.summary["notes"] == "n" * 70_000


def test_incremental_table_prompts_and_exact_pixels(runs):
    rows = runs[0].table_rows("generations")
    assert [r["prompt"] for r in rows] == PROMPTS
    assert [r["seed"] for r in rows] == [100, 101, 102]
    for i, row in enumerate(rows):
        assert row["image"].size == (16, 8)
        assert row["image"].convert("RGB").tobytes() == make_image(i).tobytes()
    assert rows[0]["image"].tobytes() != make_image(1).tobytes()  # pixels do discriminate


def test_direct_image(runs):
    im = runs[0].image("preview")
    assert im.convert("RGB").tobytes() == make_image(7).tobytes()
    assert runs[0].history[-1]["preview"]["caption"] == "hi"


def test_logged_and_used_artifacts(runs):
    gen, serve = runs
    model = gen.artifact("sd-model", type="model")
    assert sorted(model.aliases) == ["latest", "prod"] and model.metadata == {"rev": 3}
    assert model.entries["weights.bin"].read_bytes() == b"\x00weights\xff"
    increments = [a for a in gen.logged_artifacts if a.type == "wandb-run-incremental-table"]
    assert len(increments) == 3
    (used,) = serve.used_artifacts
    assert (used.name, used.type, used.client_id) == ("sd-model:latest", "model", model.client_id)
    assert gen.used_artifacts == []


def test_tampered_staged_png_is_detected(logged, runs):
    (entry,) = [e for a in runs[0].logged_artifacts for e in a.entries.values()
                if e.path.endswith(".png")][:1]
    original = entry.local_path.read_bytes()
    try:
        make_image(9).save(entry.local_path, format="PNG")
        with pytest.raises(ValueError, match="digest"):
            runs[0].table_rows("generations")
    finally:
        entry.local_path.write_bytes(original)


def test_crc_corruption_is_detected(runs, tmp_path):
    log = next(runs[0].run_dir.glob("run-*.wandb")).read_bytes()
    bad = bytearray(log)
    bad[7 + 7 + 10] ^= 0xFF  # a byte inside the first record's payload
    (tmp_path / "bad.wandb").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="crc"):
        list(read_records(tmp_path / "bad.wandb"))
    # the 70 kB summary record spans blocks (FIRST/MIDDLE/LAST chunks) and still decodes
    sizes = [r.ByteSize() for r in read_records(next(runs[0].run_dir.glob("run-*.wandb")))]
    assert max(sizes) > 2 * 32768
