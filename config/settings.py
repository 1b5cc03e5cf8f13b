"""Process configuration, read from DUCHA_* environment variables.

Unset variables mean the embedded default (`ducha up` on one machine). Invalid values fail at
start with one line that names the variable (see `load_settings`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CODEC_KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CODEC_KEY_BYTES = 32  # AES-256


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
    # When schedule `annual-inspection` starts the yearly round: "MM-DD HH:MM" in `timezone`.
    annual_inspection_at: str = "01-05 09:00"
    # Worker
    metrics_port: int = Field(0, ge=0, le=65535, description="0 disables the Prometheus endpoint")
    max_cached_workflows: int = Field(1000, ge=0)
    max_concurrent_activities: int = Field(100, ge=1)
    # Workflow tasks run on the GIL: more at once than a process can finish within the 10 s
    # workflow-task timeout only makes all of them late (docs/benchmarks.md, "worker settings").
    max_concurrent_workflow_tasks: int = Field(10, ge=2)
    # The service's workers run workflow code without the SDK's per-run sandbox (it costs more
    # than the rest of this layer together: docs/benchmarks.md, "the sandbox"); every test worker
    # and every replay runs it inside the sandbox. true runs the service's workers sandboxed too.
    workflow_sandbox: bool = False
    # Demo stack
    receiver_port: int = Field(8789, ge=1, le=65535)
    codec_port: int = Field(8790, ge=1, le=65535)
    # 督办看板: the read-only supervision board (`ducha board`), bound to board_host.
    board_host: str = "127.0.0.1"
    board_port: int = Field(8791, ge=1, le=65535)
    registry_file: Path = PROJECT_ROOT / "data" / "registry" / "demo-county.yaml"
    calendar_dir: Path = PROJECT_ROOT / "data" / "calendar"
    # Yearly assessment rubric (docs/assessment.md)
    assessment_rubric: Path = PROJECT_ROOT / "data" / "assessment" / "rubric.yaml"
    # 公文 (documents/, docs/operators.md "Documents"): 发文字号 {document_prefix}〔{year}〕{n}号,
    # numbered per prefix and year in PostgreSQL; the 发文机关 (empty: the registry's law_office).
    document_prefix: str = Field("西法督", pattern=r"^[^\s〔〕\[\]]{1,16}$")
    document_issuer: str = Field("", max_length=40)
    # Callbacks
    # List settings take a JSON list or comma-separated values: `127.0.0.1,localhost`.
    callback_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    callback_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    )
    callback_timeout_seconds: float = Field(10.0, gt=0)
    # The first attempt of each delivery is made by `callbacks.publish` itself, with this
    # timeout; a delivery that needs a retry is handed to a CallbackDelivery workflow.
    callback_inline_timeout_seconds: float = Field(3.0, gt=0)
    # Identity (docs/deployment.md, 身份核验): refuse operator actions whose event carries no
    # server-recorded principal of a registered operator. Off: allowed, marked unverified.
    require_principal: bool = False
    # Payload encryption (workers/codec.py, docs/deployment.md "Encryption and the codec server").
    # DUCHA_CODEC_KEYS: JSON object {"key-id": "<base64 of 32 random bytes>", ...}; every key
    # listed decrypts, DUCHA_CODEC_KEY_ID names the one that encrypts. Unset: the key file.
    codec_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    codec_key_id: str = Field("", validate_default=True)
    # {"active": "<key id>", "keys": {...}}; empty means `{data_dir}/codec-keys.json`, which
    # `ducha up` creates (mode 0600) when no key is configured.
    codec_keys_file: Path | None = None
    # Browser origins allowed to call the codec server; empty means the embedded Web UI
    # (http://127.0.0.1:{ui_port} and http://localhost:{ui_port}).
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Login on the codec server (docs/deployment.md "Login on the codec server"): with an issuer
    # set, every encode/decode needs the Web UI's OIDC access token (Authorization: Bearer),
    # verified against the issuer's JWKS (discovered, or DUCHA_CODEC_OIDC_JWKS_URL) for
    # signature, expiry, issuer and audience. Empty issuer: no login (the embedded stack).
    codec_oidc_issuer: str = ""
    codec_oidc_audience: str = Field("", validate_default=True)
    codec_oidc_jwks_url: str = ""
    # Connections served at once (uvicorn limit_concurrency); more get 503.
    codec_max_connections: int = Field(64, ge=1, le=10_000)
    # 督办看板: where operators' browsers reach the Web UI (links to workflows); empty means
    # http://127.0.0.1:{ui_port}. How often the page refreshes its numbers.
    board_ui_url: str = ""
    board_refresh_seconds: int = Field(5, ge=1, le=3600)

    # Keyed audit chain (config/chain_key.py, docs/reliability.md "The audit trail"): base64 of
    # 32+ random bytes the database never sees. Unset: the key file (DUCHA_LEDGER_CHAIN_KEY_FILE,
    # default `{data_dir}/ledger-chain-key`), which `ducha up` creates (mode 0600).
    ledger_chain_key: SecretStr | None = None
    ledger_chain_key_file: Path | None = None
    # Least privilege: migrations run as the owner (DUCHA_DATABASE_OWNER_URL; empty = the same as
    # DUCHA_DATABASE_URL), which then grants DUCHA_APP_ROLE what the service needs and no more;
    # the service connects with DUCHA_DATABASE_URL as that role (docs/deployment.md).
    database_owner_url: str = ""
    app_role: str = Field("ducha_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("annual_inspection_at")
    @classmethod
    def _month_day_time(cls, value: str) -> str:
        m = re.fullmatch(r"(\d{2})-(\d{2}) (\d{2}):(\d{2})", value.strip())
        try:
            month, day, hour, minute = (int(g) for g in m.groups()) if m else (0, 0, 0, 0)
            date(2023, month, day)  # a day every year has (not 02-29)
            time(hour, minute)
        except ValueError:
            raise ValueError('must be "MM-DD HH:MM", a day every year has, e.g. "01-05 09:00"') from None
        return value.strip()

    @field_validator("database_url", "database_owner_url")
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

    @field_validator("codec_keys", mode="before")
    @classmethod
    def _codec_keys_json(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError('must be a JSON object {"key-id": "<base64 32 bytes>"}') from None
            if not isinstance(value, dict):
                raise ValueError('must be a JSON object {"key-id": "<base64 32 bytes>"}')
        return value

    @field_validator("codec_keys")
    @classmethod
    def _codec_keys_valid(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for key_id, secret in value.items():
            problem = codec_key_problem(key_id, secret.get_secret_value())
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("codec_key_id")
    @classmethod
    def _codec_active_key(cls, value: str, info: ValidationInfo) -> str:
        keys = info.data.get("codec_keys")
        if keys is None:  # DUCHA_CODEC_KEYS itself was invalid and is reported
            return value
        if keys and value not in keys:
            known = ", ".join(sorted(keys))
            raise ValueError(f"must name one of the keys in DUCHA_CODEC_KEYS ({known})")
        if value and not keys:
            raise ValueError("is set but DUCHA_CODEC_KEYS is empty")
        return value

    @field_validator("callback_allowlist", "callback_retry_schedule", "codec_cors_origins", mode="before")
    @classmethod
    def _list_from_env(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            return parse_list(value, info.field_name or "")
        return value

    @field_validator("codec_cors_origins")
    @classmethod
    def _origins_valid(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if (parts.scheme not in ("http", "https") or not parts.hostname
                    or parts.path not in ("", "/") or parts.query or parts.fragment):
                raise ValueError(f"{origin!r} is not an origin like https://host[:port]")
        return [origin.rstrip("/") for origin in value]

    @field_validator("codec_oidc_issuer", "codec_oidc_jwks_url", "board_ui_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("codec_oidc_audience")
    @classmethod
    def _audience_with_issuer(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("codec_oidc_issuer") and not value:
            raise ValueError("is required when DUCHA_CODEC_OIDC_ISSUER is set (the access token's aud)")
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
        return self.database_url or f"postgresql://{self.app_role}@127.0.0.1:{self.pg_port}/ducha"

    @property
    def owner_url(self) -> str:
        """The URL migrations run with: the owner of the schema (never the service's role)."""
        if self.database_owner_url:
            return self.database_owner_url
        return self.database_url or f"postgresql://postgres@127.0.0.1:{self.pg_port}/ducha"


LIST_EXAMPLES = {
    "callback_allowlist": "127.0.0.1,agency.example.gov.cn",
    "callback_retry_schedule": "0,5,300,1800",
    "codec_cors_origins": "https://ui.example.gov.cn",
}


def parse_list(value: str, field: str = "") -> list:
    """A list setting from the environment: a JSON list, or comma-separated values (blanks
    around each dropped, empty items skipped); an empty string is the empty list."""
    text = value.strip()
    if not text:
        return []
    if text.startswith(("[", "{")):
        try:
            parsed = json.loads(text)
        except ValueError:
            example = LIST_EXAMPLES.get(field, "a,b")
            raise ValueError(f"is not a valid JSON list; use JSON or comma-separated values "
                             f"such as {example}") from None
        if not isinstance(parsed, list):
            raise ValueError("must be a JSON list or comma-separated values, not a JSON object")
        return parsed
    return [item.strip() for item in text.split(",") if item.strip()]


def isolate_environment(data_dir: Path) -> dict[str, str]:
    """Cut this process (and every child it starts) off the operator's configuration: drop every
    DUCHA_* variable and point DUCHA_DATA_DIR at `data_dir`, so neither `.data/` (its payload
    encryption key above all) nor a DUCHA_* setting of the shell reaches a bench or a test run.
    Returns the variables dropped."""
    dropped = {k: v for k, v in os.environ.items() if k.startswith("DUCHA_")}
    for name in dropped:
        del os.environ[name]
    os.environ["DUCHA_DATA_DIR"] = str(data_dir)
    return dropped


def codec_key_problem(key_id: str, encoded: str) -> str | None:
    """Why (key id, base64 key) is not a usable AES-256 key, or None; never echoes the key."""
    if not CODEC_KEY_ID_PATTERN.match(key_id):
        return f"key id {key_id!r} must be 1-64 letters, digits, '.', '_' or '-'"
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return f"key {key_id!r} is not valid base64"
    if len(raw) != CODEC_KEY_BYTES:
        return f"key {key_id!r} must be base64 of exactly {CODEC_KEY_BYTES} bytes, not {len(raw)}"
    return None


def load_settings(**overrides: object) -> Settings:
    """Read settings; on bad input exit with one line naming the DUCHA_ variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        message = err["msg"].removeprefix("Value error, ")
        if len(err["loc"]) > 1:  # an item of a list: which one
            message = f"item {err['loc'][1]} ({err.get('input')!r}): {message}"
        raise SettingsError(f"{_PREFIX}: DUCHA_{field.upper()}: {message}") from None
    except PydanticSettingsError as exc:
        # A value pydantic-settings could not even decode (JSON for a dict or list setting).
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"DUCHA_{found.group(1).upper()}" if found else "DUCHA_*"
        cause = str(exc.__cause__).splitlines()[0] if exc.__cause__ else "cannot be parsed"
        raise SettingsError(f"{_PREFIX}: {name}: {cause}") from None


_PREFIX = "配置错误 / invalid configuration"
