"""`python -m bot export` (`make export`): the LoRA file written under OUTPUTS_DIR; errors on stderr, exit 2."""

from __future__ import annotations

import safetensors.torch

from bot.__main__ import parse_args
from bot.export_cli import run_export
from gpu_service.registry import WEIGHTS_NAME, ModelRegistry
from tests.bot.conftest import bot_settings
from tests.gpu_service.test_export import publish_lora


async def test_writes_the_stored_file_or_the_kohya_conversion(tmp_path, tiny_model_dir, capsys):
    settings = bot_settings(tmp_path / "data", tiny_model_dir)
    registry = ModelRegistry(settings.registry_dir)
    publish_lora(registry, tiny_model_dir, "rex")

    assert await run_export(parse_args(["export", "rex", "1"], settings), settings) == 0
    written = settings.OUTPUTS_DIR / "rex-v1.safetensors"
    assert written.read_bytes() == (registry.version_dir("rex", 1) / WEIGHTS_NAME).read_bytes()
    assert f"wrote {written} (diffusers format" in capsys.readouterr().out

    args = parse_args(["export", "REX", "1", "--format", "kohya", "--output-dir", str(tmp_path / "k")], settings)
    assert await run_export(args, settings) == 0
    keys = safetensors.torch.load((tmp_path / "k" / "rex-v1.safetensors").read_bytes())
    assert keys and all(key.startswith("lora_unet_") for key in keys)


async def test_an_unknown_version_is_one_line_on_stderr_and_exit_2(tmp_path, tiny_model_dir, capsys):
    settings = bot_settings(tmp_path / "data", tiny_model_dir)
    publish_lora(ModelRegistry(settings.registry_dir), tiny_model_dir, "rex")
    assert await run_export(parse_args(["export", "rex", "7"], settings), settings) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "`rex` has no version 7 (it has v1)." in captured.err


def test_the_subject_and_version_are_required_and_the_format_is_checked(tmp_path, capsys):
    settings = bot_settings(tmp_path / "data")
    for argv in (["export"], ["export", "rex"], ["export", "rex", "1", "--format", "ckpt"]):
        try:
            parse_args(argv, settings)
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    assert "invalid choice: 'ckpt'" in capsys.readouterr().err
