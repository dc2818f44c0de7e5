"""The bot process runs 24/7 and must stay light: its modules never import torch or diffusers."""

from __future__ import annotations

import subprocess
import sys

BOT_SIDE = ["bot", "bot.__main__", "bot.wiring", "bot.cli", "commands.generate", "commands.wandb_log",
            "commands.outputs", "commands.community", "gpu_service.schemas", "gpu_service.client", "gpu_service.local_client", "gpu_service.modal_client",
            "gpu_service.registry", "gpu_service.settings", "gpu_service.prompts", "gpu_service.errors"]


def test_bot_side_modules_leave_torch_out():
    code = (
        "import importlib, sys\n"
        f"for name in {BOT_SIDE!r}: importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
