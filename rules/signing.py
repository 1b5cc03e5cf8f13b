"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure functions.

A message is signed as `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>` where `key` is
the base64-decoded part of the `whsec_...` secret. During secret rotation the sender signs with
every valid secret and sends the signatures space-separated in one `webhook-signature` header;
the receiver accepts the message when any of them matches one of its secrets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
TOLERANCE_SECONDS = 5 * 60
# Standard Webhooks: signing keys are between 24 and 64 bytes.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class SecretError(ValueError):
    """The secret is not `whsec_` followed by base64 of an acceptable key."""


class SignatureError(ValueError):
    """The message is not authentic (bad, missing or expired signature)."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError("密钥必须以 whsec_ 开头 / secret must start with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("密钥不是有效的 base64 / secret is not valid base64") from None
    if not key:
        raise SecretError("密钥为空 / secret is empty")
    return key


def check_secret(secret: str) -> str:
    """Validate a secret an operator typed in; returns it unchanged."""
    key = decode_secret(secret)
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise SecretError(
            f"密钥长度应为 {MIN_KEY_BYTES}–{MAX_KEY_BYTES} 字节 / "
            f"secret key must be {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes, got {len(key)}"
        )
    return secret


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per secret, space-separated."""
    if not secrets:
        raise SecretError("没有可用的签名密钥 / no signing secret")
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def webhook_headers(
    secrets: str | Sequence[str], msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: signature_header(keys, msg_id, ts, body),
    }


def verify(
    secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a received message; returns its webhook-id or raises SignatureError."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get(HEADER_ID)
    ts_text = lower.get(HEADER_TIMESTAMP)
    sig_text = lower.get(HEADER_SIGNATURE)
    if not msg_id or not ts_text or not sig_text:
        raise SignatureError("缺少签名头 / missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(ts_text)
    except ValueError:
        raise SignatureError("时间戳无效 / invalid webhook-timestamp") from None
    current = int(time.time()) if now is None else now
    if abs(current - ts) > tolerance:
        raise SignatureError("时间戳超出容差 / webhook-timestamp outside the tolerance")
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    expected = [sign(s, msg_id, ts, body).encode() for s in keys]
    matched = False
    for candidate in sig_text.split(" "):
        version, _, value = candidate.partition(",")
        if version != SIGNATURE_VERSION or not value:
            continue
        for exp in expected:
            # Compare every pair so timing does not reveal which secret matched.
            matched |= hmac.compare_digest(candidate.encode(), exp)
    if not matched:
        raise SignatureError("签名不匹配 / no matching signature")
    return msg_id
