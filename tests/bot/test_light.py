"""The bot process runs 24/7 and stays light: none of its modules imports torch, diffusers or modal."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules(package: str) -> list[str]:
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(ROOT / package)])]


def test_every_bot_and_commands_module_leaves_the_gpu_extra_and_modal_out():
    names = modules("bot") + modules("commands")
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(','.join(sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft', 'modal') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    assert {"bot.app", "bot.shell", "commands.jobs", "commands.queue"} <= set(names)
