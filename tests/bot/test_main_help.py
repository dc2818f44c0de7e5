"""`python -m bot`: every command and every option says what it is in --help."""

from __future__ import annotations

import argparse

import pytest

from bot.__main__ import build_parser, main
from tests.bot.conftest import bot_settings


def _parsers(parser: argparse.ArgumentParser):
    yield "python -m bot", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub


def test_every_option_of_every_command_has_a_help_text(tmp_path):
    parser = build_parser(bot_settings(tmp_path / "data"))
    names = []
    for name, sub in _parsers(parser):
        names.append(name)
        for action in sub._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"
    assert {"shell", "sync", "inference", "model", "export"} <= set(names)


def test_help_prints_them(tmp_path, monkeypatch, capsys):
    for key, value in {"DATA_DIR": str(tmp_path / "data"), "WANDB_MODE": "disabled"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_status:
        main(["model", "--help"])
    assert exit_status.value.code == 0
    out = capsys.readouterr().out
    assert "the subject to train" in out and "training steps" in out
