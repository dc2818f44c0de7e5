"""The bot's settings: the product's (gpu_service.settings) plus Discord, admins and queue limits.

Read once at the entry point and passed down. DISCORD_TOKEN is checked only by the commands that talk
to Discord (`python -m bot`, `python -m bot sync`), so the shell and `inference` run without one.
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from gpu_service.settings import Settings

log = logging.getLogger(__name__)
DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"

IdList = Annotated[frozenset[int], NoDecode]  # "1, 2,3" in the environment, not JSON
# An interaction token lives 15 minutes; a /qwerty answer is sent with it, so waiting plus rendering must
# end well before (a minute is kept for fetching a Variations source and uploading the reply).
REPLY_BUDGET_S = 14 * 60


class MissingToken(Exception):
    """DISCORD_TOKEN is not set; the message says how to set it."""


class BotSettings(Settings):
    DISCORD_TOKEN: SecretStr | None = None
    DISCORD_API_BASE: str = DISCORD_API_BASE
    DISCORD_GATEWAY_URL: str = DISCORD_GATEWAY_URL
    DISCORD_GUILD_ID: int | None = None  # development: sync commands to this guild at start
    OPERATOR_USER_IDS: IdList = frozenset()  # the people who run this deployment (commands/permissions.py)
    ADMIN_USER_IDS: IdList = frozenset()  # deprecated alias of OPERATOR_USER_IDS, merged into it
    ADMIN_ROLE_IDS: IdList = frozenset()
    ALLOWED_GUILD_IDS: IdList = frozenset()  # when set, the only servers the bot serves

    TRAININGS_PER_GUILD_PER_DAY: int = Field(3, ge=0)  # per UTC day; operators are not counted
    MAX_TRAIN_STEPS: int = Field(2000, ge=1, le=5000)  # the cap of /train steps
    MAX_SUBJECTS_PER_GUILD: int = Field(5, ge=0)

    MAX_RUNNING_PER_USER: int = Field(1, ge=1)
    MAX_WAITING_PER_USER: int = Field(3, ge=0)
    GPU_CONCURRENCY: int = Field(4, ge=1)  # /qwerty requests on the GPU at once, all users together
    QUEUE_TIMEOUT_S: float = Field(480.0, gt=0)
    GENERATION_TIMEOUT_S: float = Field(300.0, gt=0)
    TRAIN_TIMEOUT_S: float = Field(4 * 3600.0, gt=0)  # above the backend's own limits, which act first
    PROGRESS_INTERVAL_S: float = Field(2.0, ge=1.0)  # Discord rate-limits edits; never faster than 1/s
    GPU_WARM_ON_START: bool = True  # load the local pipeline right after connecting, not on first use
    IMAGE_RETENTION_DAYS: float = Field(30.0, ge=0)  # kept PNGs (Share, Variations) older are pruned; 0 keeps all

    @model_validator(mode="after")
    def _reply_before_token_expires(self) -> "BotSettings":
        if self.QUEUE_TIMEOUT_S + self.GENERATION_TIMEOUT_S > REPLY_BUDGET_S:
            raise ValueError(
                f"QUEUE_TIMEOUT_S + GENERATION_TIMEOUT_S must be at most {REPLY_BUDGET_S} s: Discord's "
                "interaction token (15 min) must still be valid to deliver the images"
            )
        return self

    @model_validator(mode="after")
    def _operators_from_the_old_name(self) -> "BotSettings":
        if self.ADMIN_USER_IDS:
            log.warning("ADMIN_USER_IDS is deprecated: its users are operators; rename it OPERATOR_USER_IDS")
            self.OPERATOR_USER_IDS = self.OPERATOR_USER_IDS | self.ADMIN_USER_IDS
        return self

    @field_validator("OPERATOR_USER_IDS", "ADMIN_USER_IDS", "ADMIN_ROLE_IDS", "ALLOWED_GUILD_IDS", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.replace(";", ",").split(",")]
            try:
                return frozenset(int(part) for part in parts if part)
            except ValueError:
                raise ValueError(f"expected comma-separated numeric Discord ids, got {value!r}") from None
        return value

    @field_validator("DISCORD_GUILD_ID", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def discord_token(self) -> str:
        """The token, or MissingToken with a message that says what to do."""
        token = self.DISCORD_TOKEN.get_secret_value().strip() if self.DISCORD_TOKEN else ""
        if not token:
            raise MissingToken(
                "DISCORD_TOKEN is not set: put the bot token from the Discord developer portal in the "
                "environment or in .env.secrets (DISCORD_TOKEN=...). `python -m bot shell` runs without it."
            )
        return token
