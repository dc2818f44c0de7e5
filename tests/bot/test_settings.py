"""The bot's settings: comma-separated ids, and a clear failure when the token is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import BotSettings, MissingToken

ROOT = Path(__file__).resolve().parents[2]


def test_admin_ids_are_comma_separated_numbers():
    settings = BotSettings(_env_file=None, ADMIN_USER_IDS="1, 2,3", ADMIN_ROLE_IDS="")
    assert settings.ADMIN_USER_IDS == {1, 2, 3} and settings.ADMIN_ROLE_IDS == frozenset()


def test_admin_ids_from_the_environment_are_not_read_as_json(monkeypatch):
    monkeypatch.setenv("ADMIN_USER_IDS", "123456789012345678,42")
    monkeypatch.setenv("DISCORD_GUILD_ID", "")
    settings = BotSettings(_env_file=None)
    assert settings.ADMIN_USER_IDS == {123456789012345678, 42} and settings.DISCORD_GUILD_ID is None


def test_a_bad_id_is_refused_with_the_setting_named():
    with pytest.raises(ValidationError, match="ADMIN_ROLE_IDS"):
        BotSettings(_env_file=None, ADMIN_ROLE_IDS="admins")


def test_the_token_is_required_only_when_asked_for():
    settings = BotSettings(_env_file=None)
    with pytest.raises(MissingToken, match="DISCORD_TOKEN"):
        settings.discord_token()
    assert BotSettings(_env_file=None, DISCORD_TOKEN=" abc ").discord_token() == "abc"


@pytest.mark.parametrize("args", [[], ["sync"]])
def test_python_m_bot_without_a_token_exits_2_naming_it(tmp_path, args):
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    env.update(PYTHONPATH=str(ROOT), DATA_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "DISCORD_TOKEN is not set" in done.stderr


def test_waiting_plus_rendering_must_fit_in_the_interaction_token_life():
    with pytest.raises(ValidationError, match="QUEUE_TIMEOUT_S"):
        BotSettings(_env_file=None, QUEUE_TIMEOUT_S=600, GENERATION_TIMEOUT_S=300)
    assert BotSettings(_env_file=None).QUEUE_TIMEOUT_S + BotSettings(_env_file=None).GENERATION_TIMEOUT_S <= 840
