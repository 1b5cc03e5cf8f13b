"""Payload encryption: every payload the project hands to Temporal (workflow inputs, updates,
signals, queries, results, memos, activity arguments and results, summaries) is sealed with
AES-256-GCM before it leaves the process, so Temporal's database and `temporal workflow show`
hold ciphertext only. Search attributes, workflow IDs and failure messages are not payloads and
stay plain (they carry codes, never clue contents: DESIGN.md §3).

An encrypted payload is

    metadata: {"encoding": "binary/encrypted", "encryption-key-id": "<key id>"}
    data:     12-byte random nonce || AES-GCM(serialized original Payload)

Decoding picks the key by the id in the metadata, so rotating keys is: add the new key, make
it the active one, keep the old one for reading old histories (docs/deployment.md). Payloads
that are not encrypted (histories from before encryption was turned on) pass through untouched.

A payload this process cannot open (unknown key id, failed tag, plain bytes that claim
`binary/encrypted`) is refused, never fatal: `EncryptionCodec.decode` raises CodecError (the codec
server answers 400), while the copy the SDK binds to a workflow (`with_context`, what a worker
decodes activations with) turns it into an `binary/undecryptable` payload that no converter
accepts. The SDK then drops such a signal and rejects such an update (temporalio
worker/_workflow_instance.py: `_process_signal_job`, `_apply_do_update`) instead of failing every
workflow task of the workflow forever; a warning with the workflow id is logged, never the bytes.

Keys come from settings: DUCHA_CODEC_KEYS + DUCHA_CODEC_KEY_ID, else the key file
(DUCHA_CODEC_KEYS_FILE, default `{data_dir}/codec-keys.json`) that `ducha up` generates.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NoReturn

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from config.settings import CODEC_KEY_BYTES, Settings, SettingsError, codec_key_problem

ENCODING = b"binary/encrypted"
KEY_ID_KEY = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16
KEYS_FILE_NAME = "codec-keys.json"
# What an unopenable payload becomes in a worker: an encoding no payload converter knows, so
# converting it to any type fails (a dropped signal, a rejected update), with the reason as data.
REFUSED_ENCODING = b"binary/undecryptable"

log = structlog.get_logger(__name__)


class CodecError(ValueError):
    """A payload that cannot be decrypted: unknown key id, or tampered/corrupt ciphertext."""


@dataclass(frozen=True)
class KeyRing:
    """Every key that may decrypt, by id, and the id of the one that encrypts."""

    active_id: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise ValueError(f"active key id {self.active_id!r} is not among the keys")
        for key_id, key in self.keys.items():
            if len(key) != CODEC_KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {CODEC_KEY_BYTES} bytes")

    @classmethod
    def generate(cls, key_id: str | None = None) -> KeyRing:
        key_id = key_id or f"local-{date.today():%Y%m%d}"
        return cls(key_id, {key_id: AESGCM.generate_key(bit_length=CODEC_KEY_BYTES * 8)})

    def to_json(self) -> str:
        keys = {k: base64.b64encode(v).decode() for k, v in self.keys.items()}
        return json.dumps({"active": self.active_id, "keys": keys}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        """Parse a key file; ValueError names what is wrong (never the key material)."""
        try:
            doc = json.loads(text)
        except ValueError:
            raise ValueError("is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict) or not doc["keys"]:
            raise ValueError('must be {"active": "<key id>", "keys": {"<key id>": "<base64 32 bytes>"}}')
        keys: dict[str, bytes] = {}
        for key_id, encoded in doc["keys"].items():
            problem = codec_key_problem(str(key_id), encoded) if isinstance(encoded, str) else (
                f"key {key_id!r} must be a base64 string")
            if problem:
                raise ValueError(problem)
            keys[key_id] = base64.b64decode(encoded)
        active = doc.get("active")
        if active not in keys:
            raise ValueError(f'"active" must name one of the keys ({", ".join(sorted(keys))})')
        return cls(active, keys)


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM payload codec with key ids (see the module docstring for the format)."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    @property
    def active_key_id(self) -> str:
        return self.keyring.active_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """The copy the SDK uses for one workflow or activity: it refuses what it cannot open
        instead of raising (see the module docstring)."""
        return RefusingCodec(self, context)

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keyring.active_id
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_KEY: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was enabled, or not ours to open
        key_id = payload.metadata.get(KEY_ID_KEY, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(sorted(self._ciphers))
            raise CodecError(
                f"payload is encrypted with key id {key_id!r}, which is not configured "
                f"(configured: {known}); keep old keys in DUCHA_CODEC_KEYS to read old histories"
            )
        data = payload.data
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise CodecError(f"encrypted payload (key id {key_id!r}) is truncated")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
        except InvalidTag:
            raise CodecError(
                f"encrypted payload (key id {key_id!r}) failed authentication: "
                "it was altered, or the key with this id is not the one that encrypted it"
            ) from None
        try:
            return Payload.FromString(plain)
        except DecodeError:
            raise CodecError(f"encrypted payload (key id {key_id!r}) does not hold a payload") from None


class RefusingCodec(EncryptionCodec):
    """EncryptionCodec bound to a workflow/activity: a payload that cannot be decrypted becomes a
    `binary/undecryptable` payload (dropped signal, rejected update), logged with the ids."""

    def __init__(self, codec: EncryptionCodec, context: SerializationContext | None) -> None:
        # made for every workflow activation: share the parent's ciphers instead of new ones
        self.keyring, self._ciphers, self.context = codec.keyring, codec._ciphers, context

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            try:
                out.append(self.decrypt(p))
            except CodecError as exc:
                out.append(self.refused(exc))
        return out

    def refused(self, exc: CodecError) -> Payload:
        ids: dict[str, str] = {}
        if isinstance(self.context, WorkflowSerializationContext):
            ids = {"workflow_id": self.context.workflow_id, "namespace": self.context.namespace}
        elif isinstance(self.context, ActivitySerializationContext):
            ids = {"workflow_id": self.context.workflow_id or "", "activity_type": self.context.activity_type or ""}
        log.warning("payload refused: cannot be decrypted", reason=str(exc), **ids)
        return Payload(
            metadata={"encoding": REFUSED_ENCODING},
            data=f"无法解密的载荷已拒收 / payload refused, cannot be decrypted: {exc}".encode(),
        )


def keys_file(settings: Settings) -> Path:
    return Path(settings.codec_keys_file or Path(settings.data_dir) / KEYS_FILE_NAME)


def load_keyring(settings: Settings) -> KeyRing | None:
    """The configured keys: DUCHA_CODEC_KEYS, else the key file if it exists, else None."""
    if settings.codec_keys:
        keys = {k: base64.b64decode(v.get_secret_value()) for k, v in settings.codec_keys.items()}
        return KeyRing(settings.codec_key_id, keys)
    path = keys_file(settings)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if settings.codec_keys_file:
            _file_error(path, "does not exist")
        return None
    except OSError as exc:
        _file_error(path, f"cannot be read ({exc.strerror})")
    try:
        return KeyRing.from_json(text)
    except ValueError as exc:
        _file_error(path, str(exc))


def ensure_local_keys(settings: Settings) -> tuple[Path | None, bool]:
    """For the embedded stack: when no key is configured, create the key file (mode 0600) with
    one fresh key. Returns (key file or None when DUCHA_CODEC_KEYS is used, created?)."""
    if settings.codec_keys:
        return None, False
    path = keys_file(settings)
    if path.exists():
        load_keyring(settings)  # fail now, with the variable named, if it is unusable
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crashed run that had the same pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(KeyRing.generate().to_json())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key file another process wrote
            created = True
        except FileExistsError:
            created = False
    finally:
        tmp.unlink(missing_ok=True)
    return path, created


def codec_from_settings(settings: Settings) -> EncryptionCodec | None:
    keyring = load_keyring(settings)
    return EncryptionCodec(keyring) if keyring else None


def _file_error(path: Path, problem: str) -> NoReturn:
    raise SettingsError(f"配置错误 / invalid configuration: DUCHA_CODEC_KEYS_FILE: {path} {problem}")
