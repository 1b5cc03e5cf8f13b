"""Verifying an OIDC access token (a JWT) the way a resource server does: the signature with the
issuer's published keys (JWKS), then expiry, issuer and audience.

Used by the codec server when login is on: the Temporal Web UI, with "pass access token" enabled
in its codec settings, sends the operator's access token as `Authorization: Bearer …`. The keys
come from `jwks_url`, or from the issuer's discovery document
(`{issuer}/.well-known/openid-configuration` → `jwks_uri`); they are cached and fetched again when
a token names a key id not seen yet (key rotation), at most once per REFETCH_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import jwt

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
REFETCH_SECONDS = 60
LEEWAY_SECONDS = 30


class TokenError(Exception):
    """The request's token is missing or not valid; the message is safe to return."""


@dataclass(frozen=True)
class Principal:
    subject: str
    claims: dict


class TokenVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str = "",
                 http: httpx.AsyncClient | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks_url = jwks_url
        self.http = http or httpx.AsyncClient(timeout=10, trust_env=False)
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = 0.0
        self.lock = asyncio.Lock()

    async def close(self) -> None:
        await self.http.aclose()

    async def verify_header(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("需要登录：缺少 Authorization: Bearer 访问令牌 / bearer access token required")
        return await self.verify(token.strip())

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("访问令牌格式错误 / malformed access token") from None
        key = await self._key(header.get("kid"))
        if header.get("alg") not in ALGORITHMS or header.get("alg") != key.algorithm_name:
            raise TokenError("访问令牌算法不被接受 / token algorithm not accepted")
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[key.algorithm_name], audience=self.audience,
                issuer=self.issuer, leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("访问令牌已过期 / access token expired") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"访问令牌无效 / invalid access token: {exc}") from None
        return Principal(str(claims["sub"]), claims)

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        async with self.lock:
            if not self._find(kid) and time.monotonic() - self.fetched_at >= REFETCH_SECONDS:
                await self._fetch()
            key = self._find(kid)
        if key is None:
            raise TokenError("访问令牌的签名密钥未知 / token signed with an unknown key")
        return key

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)

    async def _fetch(self) -> None:
        self.fetched_at = time.monotonic()
        try:
            url = self.jwks_url or await self._discover()
            response = await self.http.get(url)
            response.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError, KeyError) as exc:
            raise TokenError(f"无法取得身份提供方的公钥 / cannot read the issuer's keys: {exc}") from None
        self.keys = {k.key_id or f"#{i}": k for i, k in enumerate(jwks.keys)
                     if (k.public_key_use in (None, "sig"))}

    async def _discover(self) -> str:
        response = await self.http.get(f"{self.issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        return str(response.json()["jwks_uri"])
