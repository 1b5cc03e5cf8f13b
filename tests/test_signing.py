import base64
import hashlib
import hmac

import pytest

from rules.signing import (
    SecretError,
    SignatureError,
    check_secret,
    decode_secret,
    sign,
    signature_header,
    verify,
    webhook_headers,
)

# The published Standard Webhooks / Svix test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NEW_SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()


def independent_signature(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_matches_the_published_test_vector():
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    assert independent_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG}
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS + 10) == VECTOR_ID


def test_headers_round_trip_and_agree_with_an_independent_implementation():
    body = '{"id":"clue-2026-0007.3","data":{"summary":"线索已移送"}}'.encode()
    headers = webhook_headers(NEW_SECRET, "clue-2026-0007.3", body, timestamp=1_800_000_000)
    assert headers["webhook-id"] == "clue-2026-0007.3"
    assert headers["webhook-timestamp"] == "1800000000"
    assert headers["webhook-signature"] == independent_signature(
        NEW_SECRET, "clue-2026-0007.3", 1_800_000_000, body
    )
    assert verify(NEW_SECRET, headers, body, now=1_800_000_100) == "clue-2026-0007.3"


def test_header_names_are_case_insensitive():
    headers = webhook_headers(NEW_SECRET, "m1", b"{}", timestamp=100)
    upper = {k.upper(): v for k, v in headers.items()}
    assert verify(NEW_SECRET, upper, b"{}", now=100) == "m1"


def test_rotation_sends_one_signature_per_secret_and_either_verifies():
    body = b'{"x":1}'
    value = signature_header([NEW_SECRET, VECTOR_SECRET], "m2", 200, body)
    parts = value.split(" ")
    assert len(parts) == 2 and all(p.startswith("v1,") for p in parts)
    headers = {"webhook-id": "m2", "webhook-timestamp": "200", "webhook-signature": value}
    assert verify(NEW_SECRET, headers, body, now=200) == "m2"
    assert verify(VECTOR_SECRET, headers, body, now=200) == "m2"
    assert verify([VECTOR_SECRET, NEW_SECRET], headers, body, now=200) == "m2"


@pytest.mark.parametrize("delta", [-301, 301, 10_000])
def test_timestamps_outside_five_minutes_are_rejected(delta):
    headers = webhook_headers(NEW_SECRET, "m3", b"{}", timestamp=1000)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(NEW_SECRET, headers, b"{}", now=1000 + delta)
    assert verify(NEW_SECRET, headers, b"{}", now=1000 + (300 if delta > 0 else -300)) == "m3"


def test_tampering_and_wrong_secrets_are_rejected():
    body = b'{"type":"clue.transferred"}'
    headers = webhook_headers(NEW_SECRET, "m4", body, timestamp=50)
    with pytest.raises(SignatureError):
        verify(NEW_SECRET, headers, body + b" ", now=50)
    with pytest.raises(SignatureError):
        verify(VECTOR_SECRET, headers, body, now=50)
    with pytest.raises(SignatureError):
        verify(NEW_SECRET, {**headers, "webhook-id": "m5"}, body, now=50)
    with pytest.raises(SignatureError):
        verify(NEW_SECRET, {**headers, "webhook-timestamp": "51"}, body, now=50)
    # only v1 signatures count
    v2 = {**headers, "webhook-signature": headers["webhook-signature"].replace("v1,", "v2,")}
    with pytest.raises(SignatureError):
        verify(NEW_SECRET, v2, body, now=50)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_rejected(missing):
    headers = webhook_headers(NEW_SECRET, "m6", b"{}", timestamp=50)
    del headers[missing]
    with pytest.raises(SignatureError, match="missing"):
        verify(NEW_SECRET, headers, b"{}", now=50)


def test_non_numeric_timestamp_is_rejected():
    headers = {**webhook_headers(NEW_SECRET, "m7", b"{}", timestamp=50), "webhook-timestamp": "soon"}
    with pytest.raises(SignatureError, match="invalid"):
        verify(NEW_SECRET, headers, b"{}", now=50)


def test_secret_validation():
    assert decode_secret(NEW_SECRET) == b"n" * 32
    assert check_secret(NEW_SECRET) == NEW_SECRET
    for bad in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_"):
        with pytest.raises(SecretError):
            check_secret(bad)
    with pytest.raises(SecretError, match="24-64"):
        check_secret("whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(SecretError, match="no signing secret"):
        signature_header([], "m", 1, b"")
