"""Payload encryption (workers/codec.py) and the codec server (workers/codec_server.py).

The codec on its own (round trip, rotation, unknown keys, tampering), its configuration, the codec
server over real HTTP on 127.0.0.1 (protocol, CORS, namespace), and on the dev server: the raw
history of a workflow, and of a ClueTransfer with real activities, holds no plaintext of the
secrets it carries, while the codec (or `temporal workflow show --codec-endpoint`) gives it back.
Last, `ducha up` end to end: the generated key, `temporal workflow show` raw vs. through the codec
server, and the Web UI itself in headless Chromium showing the plain input only through it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.worker import Replayer, Worker

from config.settings import Settings, SettingsError, load_settings
from schemas import ids
from workers.client import data_converter
from workers.codec import (
    ENCODING,
    KEY_ID_KEY,
    CodecError,
    EncryptionCodec,
    KeyRing,
    ensure_local_keys,
    load_keyring,
)
from workers.codec_server import start_codec_server, ui_origins
from workers.embedded import (
    TemporalDevServer,
    free_port,
    port_is_open,
    temporal_cli_path,
    wait_for_port,
)
from workflows.clue_transfer import ClueTransfer

from .browser import CHROMIUM, Browser

UI = "http://127.0.0.1:8233"
BIN = Path(sys.executable).parent


def china_today() -> date:
    return datetime.now(timezone(timedelta(hours=8))).date()


@pytest.fixture(autouse=True)
def no_codec_environment(monkeypatch):
    """Keys exported in the developer's shell must not leak into these tests."""
    for var in ("DUCHA_CODEC_KEYS", "DUCHA_CODEC_KEY_ID", "DUCHA_CODEC_KEYS_FILE", "DUCHA_CODEC_CORS_ORIGINS"):
        monkeypatch.delenv(var, raising=False)


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def codec_settings(**overrides: object) -> Settings:
    keys = overrides.pop("codec_keys", None) or {"k1": new_key()}
    key_id = overrides.pop("codec_key_id", None) or next(iter(keys))
    return Settings(codec_keys=keys, codec_key_id=key_id, ui_port=8233, **overrides)


def json_payload(value: object) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([value])[0]


def with_converter(client: Client, converter: DataConverter) -> Client:
    config = client.config()
    config["data_converter"] = converter
    return Client(**config)


# --- the codec --------------------------------------------------------------------------------


async def test_round_trip_hides_the_plaintext_and_restores_it():
    codec = EncryptionCodec(KeyRing.generate("k1"))
    original = json_payload({"details": "机密内容：某执法人员 SECRET-roundtrip"})
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_KEY] == b"k1"
    assert b"SECRET-roundtrip" not in sealed.SerializeToString()
    assert "机密".encode() not in sealed.SerializeToString()
    assert await codec.decode([sealed]) == [original]
    [again] = await codec.encode([original])
    assert again.data[:12] != sealed.data[:12] and again.data != sealed.data, "fresh nonce per payload"


async def test_payloads_that_are_not_encrypted_pass_through_decode():
    codec = EncryptionCodec(KeyRing.generate("k1"))
    plain = json_payload({"written": "before encryption was turned on"})
    assert await codec.decode([plain]) == [plain]


async def test_rotation_keeps_old_keys_for_reading_and_encrypts_with_the_new_one():
    old = KeyRing.generate("2025-a")
    [sealed_old] = await EncryptionCodec(old).encode([json_payload("old secret")])
    new_key_bytes = os.urandom(32)
    rotated = EncryptionCodec(KeyRing("2026-b", {**old.keys, "2026-b": new_key_bytes}))
    assert await rotated.decode([sealed_old]) == [json_payload("old secret")]
    [sealed_new] = await rotated.encode([json_payload("new secret")])
    assert sealed_new.metadata[KEY_ID_KEY] == b"2026-b"
    only_new = EncryptionCodec(KeyRing("2026-b", {"2026-b": new_key_bytes}))
    assert await only_new.decode([sealed_new]) == [json_payload("new secret")]
    with pytest.raises(CodecError, match="'2025-a'.*not configured"):
        await only_new.decode([sealed_old])


async def test_unknown_key_id_is_refused_with_a_clear_error():
    codec = EncryptionCodec(KeyRing.generate("k1"))
    [sealed] = await codec.encode([json_payload("x")])
    sealed.metadata[KEY_ID_KEY] = b"nobody"
    with pytest.raises(CodecError) as info:
        await codec.decode([sealed])
    assert "'nobody'" in str(info.value) and "k1" in str(info.value)


async def test_tampering_is_detected():
    ring = KeyRing("k1", {"k1": os.urandom(32), "k2": os.urandom(32)})
    codec = EncryptionCodec(ring)
    [sealed] = await codec.encode([json_payload({"outcome": "属实"})])
    for position in (0, 12, len(sealed.data) - 1):  # nonce, ciphertext, tag
        flipped = Payload()
        flipped.CopyFrom(sealed)
        data = bytearray(sealed.data)
        data[position] ^= 0x01
        flipped.data = bytes(data)
        with pytest.raises(CodecError, match="failed authentication"):
            await codec.decode([flipped])
    other_key = Payload()
    other_key.CopyFrom(sealed)
    other_key.metadata[KEY_ID_KEY] = b"k2"
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([other_key])
    truncated = Payload()
    truncated.CopyFrom(sealed)
    truncated.data = sealed.data[:20]
    with pytest.raises(CodecError, match="truncated"):
        await codec.decode([truncated])


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"DUCHA_CODEC_KEYS": "{not json"}, "DUCHA_CODEC_KEYS"),
        ({"DUCHA_CODEC_KEYS": '{"k1": "not base64!"}', "DUCHA_CODEC_KEY_ID": "k1"}, "DUCHA_CODEC_KEYS"),
        ({"DUCHA_CODEC_KEYS": json.dumps({"k1": base64.b64encode(b"16 bytes only!!!").decode()}),
          "DUCHA_CODEC_KEY_ID": "k1"}, "DUCHA_CODEC_KEYS"),
        ({"DUCHA_CODEC_KEYS": json.dumps({"k1": new_key()})}, "DUCHA_CODEC_KEY_ID"),
        ({"DUCHA_CODEC_KEYS": json.dumps({"k1": new_key()}), "DUCHA_CODEC_KEY_ID": "k2"}, "DUCHA_CODEC_KEY_ID"),
        ({"DUCHA_CODEC_KEY_ID": "k1"}, "DUCHA_CODEC_KEY_ID"),
        ({"DUCHA_CODEC_CORS_ORIGINS": '["http://ui.example/path"]'}, "DUCHA_CODEC_CORS_ORIGINS"),
    ],
)
def test_bad_key_configuration_names_the_variable(monkeypatch, env, var):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert var in message and "\n" not in message
    for value in env.values():
        keys = json.loads(value) if value.startswith('{"') else {}
        for key in keys.values():
            assert key not in message, "key material never appears in errors"


def test_keys_from_the_environment_are_used_and_never_shown(monkeypatch):
    old, new = new_key(), new_key()
    monkeypatch.setenv("DUCHA_CODEC_KEYS", json.dumps({"2025": old, "2026": new}))
    monkeypatch.setenv("DUCHA_CODEC_KEY_ID", "2026")
    s = load_settings()
    assert old not in repr(s) and new not in repr(s) and new not in str(s.model_dump())
    ring = load_keyring(s)
    assert ring is not None and ring.active_id == "2026"
    assert ring.keys == {"2025": base64.b64decode(old), "2026": base64.b64decode(new)}
    converter = data_converter(s)
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class


def test_without_keys_the_converter_is_plain_pydantic(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert load_keyring(s) is None
    assert data_converter(s) is pydantic_data_converter
    assert data_converter() is pydantic_data_converter


def test_embedded_stack_generates_a_private_key_file_once(tmp_path):
    s = Settings(data_dir=tmp_path / "data")
    path, created = ensure_local_keys(s)
    assert created and path == tmp_path / "data" / "codec-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert ensure_local_keys(s) == (path, False) and path.read_text() == first
    ring = load_keyring(s)
    assert ring is not None and len(ring.keys[ring.active_id]) == 32
    assert isinstance(data_converter(s).payload_codec, EncryptionCodec)
    assert [p.name for p in path.parent.iterdir()] == ["codec-keys.json"], "no temporary files left"
    # configured keys win: nothing is generated
    configured = Settings(data_dir=tmp_path / "other", codec_keys={"k": new_key()}, codec_key_id="k")
    assert ensure_local_keys(configured) == (None, False)
    assert not (tmp_path / "other").exists()


def test_a_bad_key_file_names_the_variable(tmp_path):
    bad = tmp_path / "keys.json"
    bad.write_text(json.dumps({"active": "missing", "keys": {"k1": new_key()}}))
    with pytest.raises(SettingsError, match="DUCHA_CODEC_KEYS_FILE: .*keys.json.*active"):
        load_keyring(Settings(codec_keys_file=bad))
    bad.write_text("{")
    with pytest.raises(SettingsError, match="DUCHA_CODEC_KEYS_FILE: .*not JSON"):
        load_keyring(Settings(codec_keys_file=bad))
    with pytest.raises(SettingsError, match="DUCHA_CODEC_KEYS_FILE: .*does not exist"):
        load_keyring(Settings(codec_keys_file=tmp_path / "absent.json"))
    good = KeyRing.generate("k9")
    bad.write_text(good.to_json())
    assert load_keyring(Settings(codec_keys_file=bad)) == good


def test_codec_server_command_refuses_to_start_without_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCHA_")}
    env["DUCHA_DATA_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "workers.cli", "codec-server", "--port", "0"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DUCHA_CODEC_KEYS" in out.stderr, out.stderr


def test_dev_server_ui_is_pointed_at_the_codec_server():
    server = TemporalDevServer(None, ui_port=8233, ui_codec_endpoint="http://127.0.0.1:8790")
    cmd = server.command()
    assert cmd[cmd.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8790"
    assert "--ui-codec-endpoint" not in TemporalDevServer(None, ui_port=None).command()


# --- the codec server over HTTP ---------------------------------------------------------------


@pytest.fixture
async def codec_server():
    """(base URL, settings) of a codec server on 127.0.0.1 with a fresh key, namespace `default`."""
    s = codec_settings(namespace="default")
    server = await start_codec_server(s, 0)
    yield server.url, s
    await server.stop()


def as_proto_json(payloads: list[Payload]) -> dict:
    from google.protobuf.json_format import MessageToDict

    return {"payloads": [MessageToDict(p) for p in payloads]}


def from_proto_json(doc: dict) -> list[Payload]:
    from google.protobuf.json_format import ParseDict
    from temporalio.api.common.v1 import Payloads

    return list(ParseDict(doc, Payloads()).payloads)


async def post(url: str, body: object, **headers: str) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Namespace": "default", **headers}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.post(url, content=json.dumps(body), headers=headers)


async def test_encode_then_decode_returns_the_original(codec_server):
    base, s = codec_server
    original = [json_payload({"details": "机密内容 SECRET-http"}), json_payload(42)]
    encoded = await post(f"{base}/encode", as_proto_json(original))
    assert encoded.status_code == 200 and encoded.headers["content-type"] == "application/json"
    sealed = from_proto_json(encoded.json())
    assert [p.metadata[KEY_ID_KEY] for p in sealed] == [b"k1", b"k1"]
    assert "SECRET-http" not in encoded.text
    decoded = await post(f"{base}/decode", encoded.json())
    assert decoded.status_code == 200
    assert from_proto_json(decoded.json()) == original
    # the protocol looks only at the last path segment; the same codec decodes in-process too
    nested = await post(f"{base}/ducha/default/decode", encoded.json())
    assert from_proto_json(nested.json()) == original
    assert await EncryptionCodec(load_keyring(s)).decode(sealed) == original
    empty = await post(f"{base}/decode", {"payloads": []})
    assert empty.json() == {"payloads": []}


async def test_cors_is_limited_to_the_web_ui_origin(codec_server):
    base, s = codec_server
    assert ui_origins(s) == [UI, "http://localhost:8233"]
    body = as_proto_json([json_payload("x")])
    allowed = await post(f"{base}/encode", body, Origin=UI)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    assert "Origin" in allowed.headers["vary"]
    other = await post(f"{base}/encode", body, Origin="http://evil.example")
    assert other.status_code == 403
    assert "access-control-allow-origin" not in other.headers
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        preflight = await http.options(f"{base}/decode", headers={
            "Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"})
        refused = await http.options(f"{base}/decode", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:8233"
    allowed_headers = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-namespace"} <= allowed_headers
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


def test_configured_origins_replace_the_embedded_ui():
    s = codec_settings(codec_cors_origins=["https://ducha-ui.example.gov.cn/"])
    assert ui_origins(s) == ["https://ducha-ui.example.gov.cn"]


async def test_codec_server_refuses_what_it_must_not_serve(codec_server):
    base, s = codec_server
    body = as_proto_json([json_payload("x")])
    assert (await post(f"{base}/encode", body, **{"X-Namespace": "other"})).status_code == 403
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        anonymous = await http.post(f"{base}/encode", json=body)
    assert anonymous.status_code == 400 and "X-Namespace" in anonymous.text
    assert (await post(f"{base}/other", body)).status_code == 404
    assert (await post(f"{base}/decode", {"payloads": "no"})).status_code == 400
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        assert (await http.get(f"{base}/decode")).status_code == 405
        not_json = await http.post(f"{base}/decode", content=b"{",
                                   headers={"Content-Type": "application/json", "X-Namespace": "default"})
        assert not_json.status_code == 400 and "not JSON" in not_json.text
        text = await http.post(f"{base}/decode", content=json.dumps(body),
                               headers={"Content-Type": "text/plain", "X-Namespace": "default"})
        assert text.status_code == 415
    foreign = EncryptionCodec(KeyRing.generate("elsewhere"))
    unknown = await post(f"{base}/decode", as_proto_json(await foreign.encode([json_payload("x")])))
    assert unknown.status_code == 400 and "'elsewhere'" in unknown.text


# --- login: the Web UI's bearer access token ------------------------------------------------------


class Issuer:
    """A real OIDC issuer's public side on 127.0.0.1: discovery document and JWKS, and tokens
    signed with its RSA key (what the identity provider behind the Web UI hands out)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k-2026"
        self.jwks_fetches = 0

    async def start(self) -> Issuer:
        import jwt
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from workers.http_server import start_app

        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))

        async def discovery(request):
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def jwks(request):
            self.jwks_fetches += 1
            return JSONResponse({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

        app = Starlette(routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks)])
        self.server = await start_app(app, "127.0.0.1", 0)
        self.url = self.server.url
        return self

    def token(self, key=None, kid: str | None = None, **claims: object) -> str:
        import jwt

        now = int(time.time())
        body = {"iss": self.url, "aud": "temporal-ui", "sub": "yangfan@county", "iat": now, "exp": now + 300}
        body.update(claims)
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})


@pytest.fixture
async def login_codec_server():
    issuer = await Issuer().start()
    s = codec_settings(namespace="default", codec_oidc_issuer=issuer.url, codec_oidc_audience="temporal-ui")
    server = await start_codec_server(s, 0)
    yield server.url, issuer
    await server.stop()
    await issuer.server.stop()


async def test_with_login_on_only_a_valid_access_token_gets_through(login_codec_server):
    from cryptography.hazmat.primitives.asymmetric import rsa

    base, issuer = login_codec_server
    body = as_proto_json([json_payload("机密")])
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    missing = await post(f"{base}/encode", body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert (await post(f"{base}/encode", body, Authorization="Basic eWFuZzpwdw==")).status_code == 401
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "forged": issuer.token(key=other_key),
        "expired": issuer.token(exp=int(time.time()) - 3600),
        "other audience": issuer.token(aud="someone-else"),
        "other issuer": issuer.token(iss="https://idp.elsewhere.example"),
        "unknown key id": issuer.token(kid="not-published"),
        "not a JWT": "abc.def",
    }
    for why, token in refused.items():
        answer = await post(f"{base}/encode", body, **bearer(token))
        assert answer.status_code == 401, (why, answer.text)
        assert "机密" not in answer.text
    good = issuer.token()
    encoded = await post(f"{base}/encode", body, **bearer(good))
    assert encoded.status_code == 200, encoded.text
    decoded = await post(f"{base}/decode", encoded.json(), **bearer(good))
    assert from_proto_json(decoded.json()) == [json_payload("机密")]
    assert issuer.jwks_fetches <= 2, "keys are cached (one more fetch for the unknown key id)"
    # the browser: preflights carry no token and pass; a 401 is readable by the allowed origin
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        preflight = await http.options(f"{base}/decode", headers={
            "Origin": UI, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})
    assert preflight.status_code == 204
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    from_ui = await post(f"{base}/decode", body, Origin=UI)
    assert from_ui.status_code == 401 and from_ui.headers["access-control-allow-origin"] == UI


def test_login_settings_need_an_audience_and_urls(monkeypatch):
    monkeypatch.setenv("DUCHA_CODEC_OIDC_ISSUER", "https://idp.example.gov.cn/realms/county")
    with pytest.raises(SettingsError, match="DUCHA_CODEC_OIDC_AUDIENCE"):
        load_settings()
    monkeypatch.setenv("DUCHA_CODEC_OIDC_AUDIENCE", "temporal-ui")
    assert load_settings().codec_oidc_issuer == "https://idp.example.gov.cn/realms/county"
    monkeypatch.setenv("DUCHA_CODEC_OIDC_ISSUER", "idp.example.gov.cn")
    with pytest.raises(SettingsError, match="DUCHA_CODEC_OIDC_ISSUER"):
        load_settings()


async def test_concurrent_connections_are_bounded():
    """DUCHA_CODEC_MAX_CONNECTIONS=1: while one (kept-alive) connection is open, a second one is
    answered 503; once the first closes, requests are served again."""
    s = codec_settings(namespace="default", codec_max_connections=1)
    server = await start_codec_server(s, 0)
    request = (b"POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"X-Namespace: default\r\nContent-Length: 16\r\n\r\n{\"payloads\": []}")

    async def status_on(reader, writer) -> bytes:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        await reader.readexactly(length)
        return head.split(b" ", 2)[1]

    try:
        first = await asyncio.open_connection("127.0.0.1", server.port)
        assert await status_on(*first) == b"200"  # and the connection stays open
        second = await asyncio.open_connection("127.0.0.1", server.port)
        assert await status_on(*second) == b"503"
        second[1].close()
        first[1].close()
        for _ in range(100):  # the server notices the closed connections
            again = await asyncio.open_connection("127.0.0.1", server.port)
            status = await status_on(*again)
            again[1].close()
            if status == b"200":
                break
            await asyncio.sleep(0.1)
        assert status == b"200"
    finally:
        await server.stop()


# --- on the dev server: raw history vs decoded --------------------------------------------------


@activity.defn(name="codec_test_echo")
async def echo(text: str) -> str:
    return f"echo {text}"


@workflow.defn(name="CodecSecretKeeper", sandboxed=False)
class SecretKeeper:
    """Carries a secret through every kind of payload: input, memo, activity, signal, update,
    query and result."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.finished = False

    @workflow.run
    async def run(self, secret: str) -> str:
        echoed = await workflow.execute_activity(echo, secret, start_to_close_timeout=timedelta(seconds=30))
        workflow.upsert_memo({"echoed": echoed})
        await workflow.wait_condition(lambda: self.finished)
        return f"{echoed} | {' | '.join(self.notes)}"

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes.append(text)

    @workflow.update
    def finish(self, text: str) -> str:
        self.notes.append(text)
        self.finished = True
        return f"finished with {text}"

    @workflow.query
    def seen(self) -> list[str]:
        return list(self.notes)


def raw_bytes(history) -> bytes:
    return b"".join(event.SerializeToString() for event in history.events)


async def show(address: str, workflow_id: str, *extra: str) -> str:
    """`temporal workflow show`, without blocking the loop that serves the codec server."""
    proc = await asyncio.create_subprocess_exec(
        temporal_cli_path(), "workflow", "show", "-w", workflow_id, "--address", address,
        "--detailed", *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_raw_history_holds_no_plaintext_while_the_codec_server_reads_it(dev_env, codec_server):
    base, s = codec_server
    secure = with_converter(dev_env.client, data_converter(s))
    marker = f"SECRET-{uuid.uuid4().hex[:8]}"
    secret = f"机密线索详情 {marker}"
    task_queue = f"codec-{uuid.uuid4().hex[:8]}"
    async with Worker(secure, task_queue=task_queue, workflows=[SecretKeeper], activities=[echo]):
        handle: WorkflowHandle = await secure.start_workflow(
            SecretKeeper.run, secret, id=f"codec-{uuid.uuid4().hex[:8]}", task_queue=task_queue,
            memo={"secret": secret}, static_summary=f"summary {marker}", static_details=f"details {marker}",
        )
        await handle.signal(SecretKeeper.note, f"signal {marker}")
        assert await handle.execute_update(SecretKeeper.finish, f"update {marker}") == f"finished with update {marker}"
        result = await handle.result()
        assert result.startswith(f"echo {secret}") and f"signal {marker}" in result
        assert await handle.query(SecretKeeper.seen) == [f"signal {marker}", f"update {marker}"]
        assert (await (await handle.describe()).memo())["secret"] == secret

    plain = with_converter(dev_env.client, pydantic_data_converter)
    raw_handle = plain.get_workflow_handle(handle.id)
    history = await raw_handle.fetch_history()
    raw = raw_bytes(history)
    assert marker.encode() not in raw and "机密".encode() not in raw
    assert raw.count(ENCODING) >= 6, "input, summary, details, memo, activity, signal, update, result"
    description = await raw_handle.describe()
    assert marker.encode() not in description.raw_description.SerializeToString()

    # the codec server turns the raw start event back into the plain input
    started = history.events[0].workflow_execution_started_event_attributes
    decoded = await post(f"{base}/decode", as_proto_json(list(started.input.payloads)))
    [payload] = from_proto_json(decoded.json())
    assert json.loads(payload.data) == secret

    # what an operator sees: `temporal workflow show` raw, and through the codec server
    address = dev_env.client.service_client.config.target_host
    assert marker not in await show(address, handle.id)
    assert marker in await show(address, handle.id, "--codec-endpoint", base)

    # the history replays with the encrypting converter
    await Replayer(workflows=[SecretKeeper], data_converter=data_converter(s)).replay_workflow(history)


async def test_clue_transfer_details_never_reach_temporal_in_plain_text(dev_env, pool, db_url, receiver, codec_server):
    from activities import build_activities
    from activities.calendar import CalendarActivities
    from schemas.clue import ClueStart
    from workflows.catalog import ALL_WORKFLOWS

    from .conftest import make_settings

    base, codec_s = codec_server
    converter = data_converter(codec_s)
    secure = with_converter(dev_env.client, converter)
    task_queue = f"codec-clue-{uuid.uuid4().hex[:8]}"
    settings = make_settings(db_url, task_queue=task_queue, callback_allowlist=["127.0.0.1"])
    await CalendarActivities(pool, settings).load_dir(settings.calendar_dir)
    marker = f"SECRET-{uuid.uuid4().hex[:8]}"
    details = f"机密内容：某执法人员违法处罚 {marker}"
    note = f"移送说明 NOTE-{marker}"
    start = ClueStart.model_validate(dict(
        clue_no=f"C{uuid.uuid4().hex[:8]}", route="to_law_office", source="court",
        channel="judgment_enforcement", importance="important", discovered_on=china_today().isoformat(),
        subject_unit="market_regulation", title="执行中发现行政处罚程序违法", details=details,
        reported_by="杨帆",
    ))
    async with httpx.AsyncClient() as http:
        worker = Worker(secure, task_queue=task_queue, workflows=ALL_WORKFLOWS,
                        activities=build_activities(pool, settings, secure, http))
        async with worker:
            handle = await secure.start_workflow(ClueTransfer.run, start, id=ids.clue(start.clue_no),
                                                 task_queue=task_queue)
            await handle.signal(ClueTransfer.add_note, {"operator": "杨帆", "text": note})
            for _ in range(100):  # the note is in the status once the signal is processed
                status = await handle.query(ClueTransfer.status)
                if status.notes:
                    break
                await asyncio.sleep(0.1)
            assert status.title == start.title and any(h.note == note for h in status.history)
            for _ in range(100):  # the activity that writes the ledger row has run
                row = await pool.fetchrow("SELECT details FROM clues WHERE clue_no=$1", start.clue_no)
                if row:
                    break
                await asyncio.sleep(0.1)
            assert row and row["details"] == details, "the ledger keeps the plain details"
            history = await with_converter(dev_env.client, pydantic_data_converter) \
                .get_workflow_handle(handle.id).fetch_history()
            await handle.terminate("test done")
    raw = raw_bytes(history)
    assert marker.encode() not in raw, "clue details and notes are ciphertext in Temporal"
    assert "机密内容".encode() not in raw and start.title.encode() not in raw
    started = history.events[0].workflow_execution_started_event_attributes
    decoded = await post(f"{base}/decode", as_proto_json(list(started.input.payloads)))
    [payload] = from_proto_json(decoded.json())
    assert json.loads(payload.data)["details"] == details
    await Replayer(workflows=ALL_WORKFLOWS, data_converter=converter).replay_workflow(history)


# --- the demonstration, on `ducha up` ----------------------------------------------------


@pytest.mark.e2e
def test_ducha_up_encrypts_and_the_ui_reads_through_its_codec_server(tmp_path):
    """`ducha up` with no key configured: it creates one, a clue started with `ducha clue new`
    is ciphertext in `temporal workflow show`, and plain text through the codec server that the
    Web UI is pointed at."""
    data_dir = tmp_path / "data"
    ports = {k: free_port() for k in ("grpc", "ui", "pg", "receiver", "codec", "board")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCHA_")}
    env.update(DUCHA_DATA_DIR=str(data_dir), DUCHA_TEMPORAL_ADDRESS=f"127.0.0.1:{ports['grpc']}",
               DUCHA_UI_PORT=str(ports["ui"]), DUCHA_PG_PORT=str(ports["pg"]),
               DUCHA_RECEIVER_PORT=str(ports["receiver"]), DUCHA_CODEC_PORT=str(ports["codec"]),
               DUCHA_BOARD_PORT=str(ports["board"]))
    log = tmp_path / "up.log"
    proc = subprocess.Popen([str(BIN / "ducha"), "up"], env=env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT)
    codec_url = f"http://127.0.0.1:{ports['codec']}"
    address = f"127.0.0.1:{ports['grpc']}"
    try:
        deadline = time.monotonic() + 180
        while "is up" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        assert f"Codec server      {codec_url}" in log.read_text(errors="replace")
        key_file = data_dir / "codec-keys.json"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        wait_for_port("127.0.0.1", ports["ui"], 60, proc)
        ui = f"http://127.0.0.1:{ports['ui']}"
        with httpx.Client(trust_env=False, timeout=30) as http:
            assert http.get(f"{ui}/api/v1/settings").json()["Codec"]["Endpoint"] == codec_url
            preflight = http.options(f"{codec_url}/decode", headers={
                "Origin": ui, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace"})
            assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == ui

        marker = f"SECRET-{uuid.uuid4().hex[:8]}"
        title = "执行中发现行政处罚程序违法"
        clue_no = f"E{uuid.uuid4().hex[:8]}"
        workflow_id = ids.clue(clue_no)
        start = {"clue_no": clue_no, "route": "to_law_office", "source": "court",
                 "channel": "judgment_enforcement", "importance": "important",
                 "discovered_on": china_today().isoformat(), "subject_unit": "market_regulation",
                 "title": title, "details": f"机密内容 {marker}", "reported_by": "杨帆"}

        def temporal(*args: str) -> str:
            out = subprocess.run([temporal_cli_path(), *args, "--address", address],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            return out.stdout

        # an operator types plain JSON; the codec server encrypts it (POST /encode), as in the UI
        temporal("workflow", "start", "--type", "ClueTransfer", "--task-queue", "ducha",
                 "-w", workflow_id, "--input", json.dumps(start, ensure_ascii=False),
                 "--codec-endpoint", codec_url)
        note = f"备注 NOTE-{marker}"
        temporal("workflow", "signal", "-w", workflow_id, "--name", "add_note", "--input",
                 json.dumps({"operator": "杨帆", "text": note}, ensure_ascii=False),
                 "--codec-endpoint", codec_url)
        deadline = time.monotonic() + 60
        while note not in (queried := temporal("workflow", "query", "-w", workflow_id, "--name", "status",
                                                "--codec-endpoint", codec_url)):
            assert time.monotonic() < deadline, queried  # the worker decrypted the signal
            time.sleep(0.5)
        assert title in queried

        raw = temporal("workflow", "show", "-w", workflow_id, "--detailed")
        assert marker not in raw and "机密" not in raw and title not in raw
        assert base64.b64encode(ENCODING).decode() in raw  # "binary/encrypted"
        decoded = temporal("workflow", "show", "-w", workflow_id, "--detailed", "--codec-endpoint", codec_url)
        assert f"机密内容 {marker}" in decoded and note in decoded and title in decoded

        # `ducha` commands outside `ducha up` find the generated key through the same settings
        from schemas.clue import ClueStatus
        from workers.client import connect

        async def status() -> ClueStatus:
            s = Settings(data_dir=data_dir, temporal_address=address, ui_port=ports["ui"])
            client = await connect(s)
            return await client.get_workflow_handle(workflow_id).query(ClueTransfer.status)

        assert any(h.note == note for h in asyncio.run(status()).history)

        # the Web UI itself, in a real browser: plain text through the codec server, and a page
        # of another origin is refused by the browser's CORS check
        assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh"
        page = f"{ui}/namespaces/default/workflows/{workflow_id}"

        async def browse() -> tuple[str, str, str]:
            async with Browser(tmp_path / "chromium") as browser:
                shown = await browser.page_text(page, marker)
                from_ui = await browser.fetch_status(f"{codec_url}/decode")
                await browser.call("Page.navigate", url="data:text/html,<p>elsewhere</p>")
                await asyncio.sleep(1)
                return shown, from_ui, await browser.fetch_status(f"{codec_url}/decode")

        shown, from_ui, elsewhere = asyncio.run(browse())

        # and the same page once the codec server is gone: ciphertext only
        [codec_proc] = [c for c in psutil.Process(proc.pid).children(recursive=True)
                        if "codec-server" in " ".join(c.cmdline())]
        codec_proc.terminate()  # `ducha up` reaps it only at shutdown: wait for its port instead
        deadline = time.monotonic() + 20
        while port_is_open("127.0.0.1", ports["codec"]):
            assert time.monotonic() < deadline, "codec server did not stop"
            time.sleep(0.2)

        async def browse_without_codec() -> str:
            async with Browser(tmp_path / "chromium-no-codec") as browser:
                return await browser.page_text(page, "Input", timeout=30)

        without = asyncio.run(browse_without_codec())
        assert f"机密内容 {marker}" in shown and title in shown, shown[-3000:]
        assert from_ui == "status 200", from_ui
        assert elsewhere.startswith("blocked"), elsewhere
        assert workflow_id in without and "Input" in without, without[-3000:]
        assert marker not in without and "机密" not in without, "without the codec server: ciphertext"
    finally:
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        proc.wait(90)
    assert proc.returncode == 0, log.read_text(errors="replace")
    for port in ports.values():
        assert not port_is_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"


# --- hostile payloads: refused, never fatal ----------------------------------------------------


class PoisonNote(BaseModel):
    text: str


@workflow.defn(name="CodecPoisonTarget", sandboxed=False)
class PoisonTarget:
    """Takes notes by signal and by update until `finish`."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done)
        return self.notes

    @workflow.signal
    def note(self, note: PoisonNote) -> None:
        self.notes.append(note.text)

    @workflow.update
    def add(self, note: PoisonNote) -> int:
        self.notes.append(note.text)
        return len(self.notes)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def seen(self) -> list[str]:
        return list(self.notes)


class PoisonCodec(PayloadCodec):
    """What a hostile (or misconfigured) client sends: payloads the worker's keys cannot open.
    Decodes with the real codec, so the client can read the worker's answers."""

    def __init__(self, kind: str, real: EncryptionCodec) -> None:
        self.kind, self.real = kind, real

    async def encode(self, payloads):
        out = []
        for p in payloads:
            if self.kind == "unknown key":
                [sealed] = await EncryptionCodec(KeyRing.generate("intruder")).encode([p])
            elif self.kind == "bad tag":  # the worker's key id, another key
                [sealed] = await EncryptionCodec(KeyRing("k1", {"k1": os.urandom(32)})).encode([p])
            else:  # plain bytes that only claim to be encrypted
                sealed = Payload(metadata={"encoding": ENCODING, KEY_ID_KEY: b"k1"},
                                 data=b"POISON-PLAIN" + p.SerializeToString())
            out.append(sealed)
        return out

    async def decode(self, payloads):
        return await self.real.decode(payloads)


async def test_bound_codec_refuses_what_it_cannot_open_and_logs_no_bytes():
    from structlog.testing import capture_logs
    from temporalio.converter import WorkflowSerializationContext

    ring = KeyRing.generate("k1")
    [sealed] = await EncryptionCodec(KeyRing.generate("intruder")).encode([json_payload("SECRET-x")])
    bound = EncryptionCodec(ring).with_context(WorkflowSerializationContext(namespace="default",
                                                                            workflow_id="wf-poison"))
    with capture_logs() as logs:
        [refused] = await bound.decode([sealed])
    assert refused.metadata["encoding"] == b"binary/undecryptable"
    with pytest.raises(Exception, match="binary/undecryptable"):
        pydantic_data_converter.payload_converter.from_payloads([refused], [str])
    [entry] = [e for e in logs if e["event"].startswith("payload refused")]
    assert entry["workflow_id"] == "wf-poison" and "'intruder'" in entry["reason"]
    assert sealed.data.hex() not in repr(logs) and repr(sealed.data) not in repr(logs)
    with pytest.raises(CodecError):  # unbound (the codec server): still an error, answered 400
        await EncryptionCodec(ring).decode([sealed])


async def test_poison_signals_and_updates_leave_the_workflow_running(dev_env):
    from structlog.testing import capture_logs
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError

    s = codec_settings()
    converter = data_converter(s)
    secure = with_converter(dev_env.client, converter)
    task_queue = f"poison-{uuid.uuid4().hex[:8]}"
    kinds = ("unknown key", "bad tag", "plain bytes")
    with capture_logs() as logs:
        async with Worker(secure, task_queue=task_queue, workflows=[PoisonTarget]):
            handle = await secure.start_workflow(PoisonTarget.run, id=f"poison-{uuid.uuid4().hex[:8]}",
                                                 task_queue=task_queue)
            for kind in kinds:
                hostile = with_converter(dev_env.client, dataclasses.replace(
                    converter, payload_codec=PoisonCodec(kind, converter.payload_codec)))
                poisoned = hostile.get_workflow_handle(handle.id)
                await poisoned.signal(PoisonTarget.note, PoisonNote(text=f"POISON signal {kind}"))
                with pytest.raises(WorkflowUpdateFailedError):
                    await poisoned.execute_update(PoisonTarget.add, PoisonNote(text=f"POISON update {kind}"))
                # the next good signal and update are taken
                await handle.signal(PoisonTarget.note, PoisonNote(text=f"good after {kind}"))
                assert await handle.execute_update(PoisonTarget.add, PoisonNote(text=f"update after {kind}")) \
                    == 2 * (kinds.index(kind) + 1)
            assert await handle.query(PoisonTarget.seen) == [
                t for k in kinds for t in (f"good after {k}", f"update after {k}")]
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            await handle.signal(PoisonTarget.finish)
            assert len(await handle.result()) == 6
    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types, "no workflow task ever failed"
    assert types.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 7  # 3 poison, 3 good, finish
    refused = [e for e in logs if e["event"].startswith("payload refused")]
    assert len(refused) >= 6 and all(e.get("workflow_id") == handle.id for e in refused)
    assert "POISON" not in repr(refused)
    await Replayer(workflows=[PoisonTarget], data_converter=converter).replay_workflow(history)
