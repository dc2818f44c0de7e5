"""A data file written by a newer bot stops the start with one sentence on stderr and exit status 3: no
traceback, no bot that looks healthy while every command fails, and the file is left as it was."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def newer_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.executescript("CREATE TABLE future (x); PRAGMA user_version = 99;")
    connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jobs.sqlite3", "community.sqlite3"])
def test_the_bot_refuses_to_start_on_a_file_from_newer_code(tmp_path, name):
    data = tmp_path / "data"
    newer_database(data / name)
    before = (data / name).read_bytes()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "DATA_DIR": str(data),
           "DISCORD_TOKEN": "not-a-real-token", "WANDB_MODE": "disabled", "GPU_BACKEND": "local",
           "DISCORD_API_BASE": "http://127.0.0.1:9/api/v10", "DISCORD_GATEWAY_URL": "ws://127.0.0.1:9/"}
    finished = subprocess.run([sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
    errors = [line for line in finished.stderr.splitlines() if line.startswith("error:")]
    assert finished.returncode == 3, finished.stderr[-3000:]
    assert len(errors) == 1 and str(data / name) in errors[0] and "schema version 99" in errors[0]
    assert "Traceback" not in finished.stderr
    assert (data / name).read_bytes() == before
