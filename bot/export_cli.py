"""`python -m bot export` (`make export`): write a version's LoRA file under OUTPUTS_DIR, as /export attaches it."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli import fail
from bot.settings import BotSettings
from bot.wiring import make_gpu_client
from commands.export import FORMATS, export_lora
from commands.permissions import AdminPolicy, Caller


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", help="the subject, as /models lists it")
    parser.add_argument("version", type=int, help="the version number (v<N> in /models)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="diffusers",
                        help="diffusers: the file as stored; kohya: for AUTOMATIC1111 and ComfyUI (default: diffusers)")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write the file (default: OUTPUTS_DIR)")


async def run_export(args: argparse.Namespace, settings: BotSettings) -> int:
    gpu = make_gpu_client(settings)
    try:
        exported = await export_lora(gpu, AdminPolicy(), Caller.local_operator(), args.subject.lower(), args.version,
                                     args.fmt)
    except Exception as error:
        return fail(error, "export")
    finally:
        await gpu.close()
    folder = args.output_dir or settings.OUTPUTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / exported.filename
    path.write_bytes(exported.data)
    print(f"wrote {path} ({args.fmt} format, {len(exported.data)} bytes)")
    return 0
