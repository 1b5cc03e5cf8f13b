"""SSRF guard for callback endpoints.

A callback URL is accepted only when it is http(s), carries no user name or password, and every
address its host resolves to is a public (globally routable) unicast address. Refused: loopback,
private, link-local, CGNAT (100.64/10), cloud metadata, unspecified, multicast, reserved and
other non-global ranges, and the IPv4-mapped, 6to4 and NAT64 forms of those. Numeric hosts in
non-canonical spellings (0x7f000001, 2130706433, 0177.0.0.1, 127.1) are normalized, reported with
the address they denote, and always refused.

The operator's allowlist (DUCHA_CALLBACK_ALLOWLIST) lifts the guard: an entry is a host name
(trusted whatever it resolves to), an IP literal or a CIDR network (addresses inside it are
accepted). Name resolution is injected (`Resolver`), so the rules stay testable without DNS.

`check_url` returns a `Target` with the checked addresses; the sender connects to one of those
addresses rather than resolving the name again, which closes the DNS-rebinding window.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (host, port) -> every address (A and AAAA) the host resolves to, as text.
Resolver = Callable[[str, int], Sequence[str]]

ALLOWED_SCHEMES = ("http", "https")

CLOUD_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Huawei Cloud, OpenStack
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "169.254.0.23",  # Tencent Cloud
    )
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
BROADCAST = ipaddress.IPv4Address("255.255.255.255")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

# One numeric label as inet_aton reads it: hex, octal (leading 0) or decimal.
_NUM_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$")


class ForbiddenAddress(ValueError):
    """The URL must not be called. `reason` is a sentence for operators (Chinese / English)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"禁止的回调地址 / forbidden callback URL {url}: {reason}")
        self.url = url
        self.reason = reason


class ResolutionError(OSError):
    """The host name did not resolve (possibly a transient DNS failure)."""


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard."""

    url: str
    scheme: str
    host: str  # lower-case ASCII (IDNA) name or canonical IP text, no brackets
    port: int
    addresses: tuple[str, ...] = ()  # checked addresses to connect to; empty: resolve normally
    allowlisted: bool = False


@dataclass(frozen=True)
class Allowlist:
    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().strip("[]").rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(_idna(entry))
        return cls(frozenset(names), tuple(networks))

    def has_name(self, host: str) -> bool:
        return host in self.names

    def has_address(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)


def system_resolver(host: str, port: int) -> list[str]:
    """Every A/AAAA address of `host`, via the operating system's resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolutionError(f"无法解析主机 / cannot resolve {host}: {exc}") from None
    # sockaddr[0] may carry an IPv6 zone ("fe80::1%eth0"); the zone does not change the class.
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def classify(ip: IPAddress) -> str | None:
    """Why `ip` must not be called, or None for a public unicast address."""
    if ip in CLOUD_METADATA:
        return "云平台元数据地址 cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            form, v4 = embedded
            reason = classify(v4)
            if reason:
                return f"{reason}（{form} {v4}）"
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified, "未指定地址 unspecified address"),
        (ip.is_loopback, "回环地址 loopback address"),
        (ip.version == 4 and ip in CGNAT, "运营商级 NAT 共享地址 CGNAT (100.64.0.0/10)"),
        (ip.is_link_local, "链路本地地址 link-local address"),
        (ip.is_multicast, "组播地址 multicast address"),
        (ip == BROADCAST, "广播地址 broadcast address"),
        (ip.is_private, "内网地址 private address"),
        (ip.is_reserved, "保留地址 reserved address"),
        (ip.version == 6 and ip in NAT64_LOCAL, "本地 NAT64 地址 local-use NAT64 address"),
        (not ip.is_global, "非公网地址 non-global address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if ip.ipv4_mapped is not None:
        return "IPv4 映射地址 IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4 地址 6to4", ip.sixtofour
    if ip in NAT64:
        return "NAT64 地址 NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return "Teredo 地址 Teredo", ip.teredo[1]
    return None


def parse_numeric_host(host: str) -> tuple[IPAddress, bool] | None:
    """(address, canonical) when `host` is an IP literal in any spelling, else None.

    IPv4 follows inet_aton (what resolvers and many HTTP stacks accept): 1-4 labels, each
    decimal, octal (leading 0) or hex (0x); the last label fills the remaining bytes. As in the
    WHATWG URL standard, a host whose last label is numeric is an IPv4 attempt, and one that
    does not parse is rejected rather than resolved as a name.
    """
    if ":" in host:
        if "%" in host:
            raise ValueError("IPv6 zone identifiers are not allowed")
        return ipaddress.IPv6Address(host), True
    labels = host.split(".")
    if not _NUM_LABEL.match(labels[-1]):
        return None
    values: list[int] = []
    for label in labels:
        if not _NUM_LABEL.match(label):
            raise ValueError(f"invalid IPv4 address {host!r}")
        if label.startswith("0x"):
            values.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                raise ValueError(f"invalid octal label in {host!r}")
            values.append(int(label, 8))
        else:
            values.append(int(label))
    if len(values) > 4 or any(v > 255 for v in values[:-1]):
        raise ValueError(f"invalid IPv4 address {host!r}")
    tail_bytes = 5 - len(values)
    if values[-1] >= 256**tail_bytes:
        raise ValueError(f"invalid IPv4 address {host!r}")
    number = 0
    for v in values[:-1]:
        number = number * 256 + v
    number = number * 256**tail_bytes + values[-1]
    ip = ipaddress.IPv4Address(number)
    return ip, str(ip) == host


def check_url(
    url: str,
    allowlist: Allowlist | Iterable[str] = (),
    resolve: Resolver = system_resolver,
) -> Target:
    """Check `url`; return the Target to call or raise ForbiddenAddress / ResolutionError."""
    allow = allowlist if isinstance(allowlist, Allowlist) else Allowlist.parse(allowlist)
    scheme, host, port = _split(url)
    numeric = _numeric(url, host)
    if numeric is not None:
        if allow.has_address(numeric):
            return Target(url, scheme, str(numeric), port, (str(numeric),), allowlisted=True)
        reason = classify(numeric)
        if reason:
            raise ForbiddenAddress(url, f"{numeric} 是{reason}")
        return Target(url, scheme, str(numeric), port, (str(numeric),))
    host = _idna(host)
    if allow.has_name(host):
        return Target(url, scheme, host, port, (), allowlisted=True)
    addresses = list(resolve(host, port))
    if not addresses:
        raise ResolutionError(f"主机没有地址 / {host} has no address")
    checked: list[str] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise ForbiddenAddress(url, f"{host} 解析出无效地址 resolves to an invalid address") from None
        if allow.has_address(ip):
            checked.append(str(ip))
            continue
        reason = classify(ip)
        if reason:
            raise ForbiddenAddress(url, f"{host} 解析到 {ip}，该地址是{reason}")
        checked.append(str(ip))
    return Target(url, scheme, host, port, tuple(checked))


def _split(url: str) -> tuple[str, str, int]:
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url) or "\\" in url:
        raise ForbiddenAddress(url, "地址含有空白、控制字符或反斜杠 URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ForbiddenAddress(url, f"地址无效 invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ForbiddenAddress(url, "只允许 http 或 https only http and https are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ForbiddenAddress(url, "地址不得包含用户名或密码 URL must not carry credentials")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ForbiddenAddress(url, "缺少主机名 missing host")
    if port == 0:
        raise ForbiddenAddress(url, "端口无效 invalid port 0")
    return scheme, host, port or (443 if scheme == "https" else 80)


def _numeric(url: str, host: str) -> IPAddress | None:
    try:
        parsed = parse_numeric_host(host)
    except ValueError as exc:
        raise ForbiddenAddress(url, f"数字地址无效 invalid numeric host: {exc}") from None
    if parsed is None:
        if "%" in host or not _HOST_NAME.match(_idna(host)):
            raise ForbiddenAddress(url, f"主机名无效 invalid host name {host!r}")
        return None
    ip, canonical = parsed
    if not canonical:
        reason = classify(ip)
        what = f"，该地址是{reason}" if reason else ""
        raise ForbiddenAddress(
            url, f"数字主机写法不规范 non-canonical numeric host {host} = {ip}{what}"
        )
    return ip


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.lower()
