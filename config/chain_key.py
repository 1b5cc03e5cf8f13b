"""The key of the audit chains (migrations/0015_keyed_chain.sql): where it comes from, and the
HMAC it computes. The database never holds it, so whoever owns the database can delete rows but
cannot write a row (or rewrite one) that verifies.

DUCHA_LEDGER_CHAIN_KEY (base64 of at least 32 random bytes), else the key file
(DUCHA_LEDGER_CHAIN_KEY_FILE, default `{data_dir}/ledger-chain-key`) that `ducha up` creates.
Losing the key loses nothing recorded, only the proof: keep it with the codec keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from config.settings import Settings, SettingsError

KEY_FILE_NAME = "ledger-chain-key"
MIN_KEY_BYTES = 32
ALG_SHA256 = "sha256"  # 0007's unkeyed chain (rows written before 0015)
ALG_HMAC = "hmac-sha256"


@dataclass(frozen=True)
class ChainKey:
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise ValueError(f"the chain key must be at least {MIN_KEY_BYTES} bytes")

    @classmethod
    def generate(cls) -> ChainKey:
        return cls(secrets.token_bytes(MIN_KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str) -> ChainKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64") from None
        if len(raw) < MIN_KEY_BYTES:
            raise ValueError(f"must be base64 of at least {MIN_KEY_BYTES} bytes, not {len(raw)}")
        return cls(raw)

    def to_base64(self) -> str:
        return base64.b64encode(self.secret).decode()

    def mac(self, prev_hash: str | None, canonical: str) -> str:
        """hex HMAC-SHA256 of one row: the algorithm, the previous row's hash, the row's text."""
        message = "\x1e".join((ALG_HMAC, prev_hash or "", canonical)).encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def sha256_link(prev_hash: str | None, canonical: str) -> str:
    """0007's unkeyed link (what PostgreSQL computes for SHA-256 rows)."""
    return hashlib.sha256(f"{prev_hash or ''}\x1e{canonical}".encode()).hexdigest()


def key_file(settings: Settings) -> Path:
    return Path(settings.ledger_chain_key_file or Path(settings.data_dir) / KEY_FILE_NAME)


def load_chain_key(settings: Settings) -> ChainKey:
    """The configured key; exits with one line naming the variable when there is none."""
    if settings.ledger_chain_key is not None:
        try:
            return ChainKey.from_base64(settings.ledger_chain_key.get_secret_value())
        except ValueError as exc:
            raise SettingsError(f"配置错误 / invalid configuration: DUCHA_LEDGER_CHAIN_KEY {exc}") from None
    path = key_file(settings)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(
            "配置错误 / invalid configuration: DUCHA_LEDGER_CHAIN_KEY is not set and "
            f"DUCHA_LEDGER_CHAIN_KEY_FILE {path} does not exist (`ducha up` creates it; production: "
            "docs/deployment.md)") from None
    except OSError as exc:
        raise SettingsError(f"配置错误 / invalid configuration: DUCHA_LEDGER_CHAIN_KEY_FILE {path} "
                            f"cannot be read ({exc.strerror})") from None
    try:
        return ChainKey.from_base64(text)
    except ValueError as exc:
        raise SettingsError(f"配置错误 / invalid configuration: DUCHA_LEDGER_CHAIN_KEY_FILE {path} {exc}") from None


def ensure_local_chain_key(settings: Settings) -> tuple[Path | None, bool]:
    """For the embedded stack: without DUCHA_LEDGER_CHAIN_KEY, create the key file (mode 0600)
    once. Returns (key file or None when the variable is used, created?)."""
    if settings.ledger_chain_key is not None:
        load_chain_key(settings)
        return None, False
    path = key_file(settings)
    if path.exists():
        load_chain_key(settings)  # fail now, naming the variable, if it is unusable
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(ChainKey.generate().to_base64() + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # atomic; never replaces a key another process wrote
            created = True
        except FileExistsError:
            created = False
    finally:
        tmp.unlink(missing_ok=True)
    return path, created
