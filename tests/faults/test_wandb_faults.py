"""W&B faults, for real: a run that cannot start, then can; a server that refuses connections.

Generation logging must survive both: rows wait in a bounded buffer, the log reconnects with backoff,
and what waited is in the run once W&B is back. The API key never lands in ~/.netrc.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from pathlib import Path

import pytest
from PIL import Image

from commands.context import RequestContext
from commands.generate import Generation
from commands.wandb_log import TABLE_KEY, WandbConfig, WandbGenerationLog
from gpu_service.schemas import GeneratedImage, GenerateRequest, GenerateResult
from tests.support.wandb_offline import read_offline_runs

CONTEXT = RequestContext(front_end="discord", user_id="42", guild_id="7", channel_id="8")
FAKE_KEY = "k" * 40  # the shape of a W&B key; never valid anywhere


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 100, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def generation(number: int) -> Generation:
    result = GenerateResult(
        prompt=f"prompt {number}", negative_prompt="", model="base", subject="qwerty", version=None,
        base_fallback=False, steps=2, guidance=7.5, width=8, height=8,
        images=(GeneratedImage(index=0, seed=number, png=png(number), withheld=False),),
    )
    request = GenerateRequest(prompt_prefix=f"prompt {number}", subject="qwerty")
    return Generation(f"g{number}", request, result, CONTEXT)


def wait_until(condition, timeout: float = 60.0) -> None:
    """Poll a background thread's progress; the timeout only stops a hung test."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the logging thread made no progress"
        time.sleep(0.02)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETRC", raising=False)
    return home


def dropped_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "commands.wandb_log" and "dropped" in r.message]


def test_rows_logged_while_a_run_cannot_start_are_written_once_it_can(tmp_path, home, caplog):
    runs = tmp_path / "runs"
    runs.mkdir()
    blocker = runs / "wandb"  # wandb.init makes its run folder in here: a file makes it fail
    blocker.write_text("not a directory")
    config = WandbConfig(project="p", mode="offline", directory=runs, api_key=FAKE_KEY, buffer_rows=3,
                         retry_first_s=0.05, retry_max_s=0.2)
    log = WandbGenerationLog(config)
    try:
        log.log_generation(generation(1))
        log.flush()  # returns once the first attempt has failed
        assert log.stats().down
        for number in (2, 3, 4, 5):
            log.log_generation(generation(number))
        assert log.stats().rows_waiting == 3  # the buffer holds 3 rows: the 2 oldest were dropped
        blocker.unlink()  # the condition clears: the next retry starts a run
        wait_until(lambda: log.stats().rows_logged == 3)
        log.log_generation(generation(6))
        assert log.flush()
        stats = log.stats()
    finally:
        log.close()
    [run] = read_offline_runs(runs)
    written = [row["row_id"] for row in run.table_rows(TABLE_KEY)]
    assert (stats.rows_logged, stats.rows_buffered, stats.rows_dropped, stats.down) == (4, 5, 2, False)
    assert len(written) == 4 and written == sorted(written) and written[-1] == "g6-0"  # in order, none twice
    dropped = [row_id for row_id in (f"g{n}-0" for n in range(1, 6)) if row_id not in written]
    assert [row_id in line for row_id, line in zip(dropped, dropped_lines(caplog), strict=True)] == [True, True]
    assert len([r for r in caplog.records if "W&B logging failed" in r.message]) == 1
    assert "W&B logging is back" in caplog.text
    assert list(home.iterdir()) == []  # no ~/.netrc, nothing else in the home directory


def test_a_server_that_refuses_connections_leaves_rows_waiting_and_writes_no_key(tmp_path, home, monkeypatch,
                                                                                   caplog):
    with socket.socket() as probe:  # a loopback port with nobody listening: every connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    config = WandbConfig(project="p", mode="online", directory=tmp_path / "runs", api_key=FAKE_KEY,
                         init_timeout_s=1.0, retry_first_s=0.05, retry_max_s=0.1)
    log = WandbGenerationLog(config)
    log.log_generation(generation(1))
    log.flush()
    log.log_generation(generation(2))
    wait_until(lambda: "W&B still unreachable" in caplog.text)  # it kept trying after the first refusal
    stats = log.stats()
    log.close()
    assert stats.down and (stats.rows_logged, stats.rows_buffered, stats.rows_waiting) == (0, 2, 2)
    assert log.stats().rows_dropped == 2
    lines = dropped_lines(caplog)
    assert len(lines) == 2 and "g1-0" in lines[0] and "g2-0" in lines[1]
    assert FAKE_KEY not in caplog.text
    assert list(home.iterdir()) == []
    assert not list((tmp_path / "runs").rglob("*.netrc"))


def test_logging_after_close_is_counted_as_dropped(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="commands.wandb_log")
    log = WandbGenerationLog(WandbConfig(project="p", mode="offline", directory=tmp_path))
    log.close()
    log.log_generation(generation(1))
    assert log.stats().rows_dropped == 1 and "g1-0" in dropped_lines(caplog)[0]
