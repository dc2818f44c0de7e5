"""`python -m bot` as a process, pointed at the loopback Discord by DISCORD_API_BASE/DISCORD_GATEWAY_URL."""

from __future__ import annotations

import ast
import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.serve import YOUNG_COLLECTION_EVERY
from tests.support.discord_stub import DiscordStub

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "process-test-token"


async def start_bot(stub: DiscordStub, tmp_path: Path, **extra: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "ADMIN_"))}
    env.update(stub.bot_env(), PYTHONPATH=str(ROOT), DISCORD_TOKEN=TOKEN, DATA_DIR=str(tmp_path / "data"),
               WANDB_MODE="disabled", **extra)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )


async def stop(process: asyncio.subprocess.Process, signum: int) -> tuple[int, str]:
    if process.returncode is None:
        process.send_signal(signum)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        raise AssertionError(f"the bot did not stop on {signum}:\n{out.decode()}") from None
    return process.returncode, out.decode()


@pytest.mark.slow
async def test_the_bot_process_logs_in_answers_qwerty_with_pngs_and_stops_cleanly(tmp_path, tiny_model_dir):
    async with DiscordStub(token=TOKEN) as stub:
        process = await start_bot(stub, tmp_path, BASE_MODEL=str(tiny_model_dir), GPU_BACKEND="local")
        try:
            await stub.wait_connected(timeout=60)
            interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a painting of a", "count": 2,
                                                              "steps": 2})
            ack = await interaction.wait_ack(timeout=10)
            assert ack.callback_type == 5 and ack.at - interaction.sent_at < 3.0
            answer = await interaction.responses.wait_for(lambda s: s.kind == "followup", timeout=120)
        finally:
            code, out = await stop(process, signal.SIGTERM)
    assert [Image.open(io.BytesIO(f.data)).size for f in answer.files] == [(64, 64)] * 2
    assert code == 0, out
    assert "Traceback" not in out, out
    assert not any(r.path.endswith("/commands") and r.method == "PUT" for r in stub.requests)  # no sync


async def test_ctrl_c_stops_the_bot_cleanly_without_building_the_gpu_client(tmp_path):
    async with DiscordStub(token=TOKEN) as stub:
        process = await start_bot(stub, tmp_path, GPU_BACKEND="modal", GPU_WARM_ON_START="false")
        try:
            await stub.wait_connected(timeout=30)
        finally:
            code, out = await stop(process, signal.SIGINT)
    assert code == 0 and "Traceback" not in out, out


async def test_a_wrong_token_exits_non_zero_with_a_clear_message(tmp_path):
    async with DiscordStub(token="the-right-token") as stub:
        process = await start_bot(stub, tmp_path, GPU_BACKEND="modal", GPU_WARM_ON_START="false")
        code, out = await asyncio.wait_for(stop_when_done(process), 60)
    assert code == 1 and "Discord refused the token (DISCORD_TOKEN)" in out


async def stop_when_done(process):
    out, _ = await process.communicate()
    return process.returncode, out.decode()


def test_once_connected_the_collector_stays_out_of_the_way():
    """Run in a child: the tuning is process-wide (bench/ack_latency.py shows what it does to ack latency)."""
    code = (
        "import asyncio, gc\n"
        "from bot.serve import tune_collector_when_ready\n"
        "class Ready:\n"
        "    async def wait_until_ready(self): pass\n"
        "before = gc.get_freeze_count(), gc.get_threshold()\n"
        "asyncio.run(tune_collector_when_ready(Ready()))\n"
        "print(repr((before, (gc.get_freeze_count(), gc.get_threshold()))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    (frozen_before, thresholds_before), (frozen_after, thresholds_after) = ast.literal_eval(done.stdout)
    assert done.returncode == 0 and frozen_before == 0 and frozen_after > 10_000
    assert thresholds_before[0] == 700 and thresholds_after == (YOUNG_COLLECTION_EVERY, *thresholds_before[1:])
