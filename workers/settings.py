"""Process configuration, read from DUCHA_* environment variables.

Unset variables mean the embedded default (`ducha up` on one machine). Invalid values fail at
start with one line that names the variable (see `load_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(SystemExit):
    """Raised (as an exit) when configuration is invalid; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUCHA_", extra="ignore")

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "ducha"
    ui_port: int = Field(8233, ge=1, le=65535)
    # PostgreSQL; empty means "the embedded server under data_dir".
    database_url: str = ""
    pg_port: int = Field(55432, ge=1, le=65535)
    data_dir: Path = PROJECT_ROOT / ".data"
    # Logging
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    timezone: str = "Asia/Shanghai"
    # Worker
    metrics_port: int = Field(0, ge=0, le=65535, description="0 disables the Prometheus endpoint")
    max_cached_workflows: int = Field(1000, ge=0)
    max_concurrent_activities: int = Field(100, ge=1)
    # Demo stack
    receiver_port: int = Field(8789, ge=1, le=65535)
    codec_port: int = Field(8790, ge=1, le=65535)
    registry_file: Path = PROJECT_ROOT / "data" / "registry" / "demo-county.yaml"
    calendar_dir: Path = PROJECT_ROOT / "data" / "calendar"
    # Callbacks
    callback_allowlist: list[str] = Field(default_factory=list)
    callback_retry_schedule: list[float] = Field(
        default_factory=lambda: [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    )
    callback_timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("must be host:port")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def embedded_postgres(self) -> bool:
        return not self.database_url

    @property
    def postgres_url(self) -> str:
        """The URL to connect to: the configured one, or the embedded server's."""
        return self.database_url or f"postgresql://postgres@127.0.0.1:{self.pg_port}/ducha"


def load_settings(**overrides: object) -> Settings:
    """Read settings; on bad input exit with one line naming the DUCHA_ variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        message = err["msg"].removeprefix("Value error, ")
        raise SettingsError(f"配置错误 / invalid configuration: DUCHA_{field.upper()}: {message}") from None
