"""SSRF guard for callback endpoints.

A callback URL is accepted only when it is http(s), carries no user name or password, and every
address its host resolves to is a public unicast address. What is refused is written out here as
explicit ranges (`IPV4_SPECIAL`, `IPV6_SPECIAL`, `HOST_ONLY`), independent of the interpreter's
`ipaddress` tables (whose `is_private` / `is_global` changed between Python releases): every entry
of IANA's IPv4 and IPv6 Special-Purpose Address Registries, multicast, the reserved 240/4, the
deprecated site-local fec0::/10, everything outside IPv6 global unicast (2000::/3), and cloud
host-only addresses (instance metadata, Azure's wire server 168.63.129.16, …). The IPv4-mapped
(::ffff:0:0/96), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) forms are judged by the IPv4 address
they carry. Numeric hosts in non-canonical spellings (0x7f000001, 2130706433, 0177.0.0.1, 127.1)
are normalized, reported with the address they denote, and always refused.

The operator's allowlist (DUCHA_CALLBACK_ALLOWLIST) lifts the guard: an entry is a host name
(trusted whatever it resolves to), an IP literal or a CIDR network (addresses inside it are
accepted). Name resolution is injected (`Resolver`), so the rules stay testable without DNS.
Host names are compared and resolved in the form the HTTP client (httpx) puts on the wire:
lower case, IDNA 2008 via the `idna` package (`faß.example` is `xn--fa-hia.example`, not the
IDNA 2003 `fass.example` of Python's own codec).

`check_url` returns a `Target` with the checked addresses; the sender connects to one of those
addresses rather than resolving the name again, which closes the DNS-rebinding window.
`check_url_offline` does the same without ever resolving: it answers for IP literals and
allowlisted names, and says when a name still needs a look-up.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (host, port) -> every address (A and AAAA) the host resolves to, as text.
Resolver = Callable[[str, int], Sequence[str]]

ALLOWED_SCHEMES = ("http", "https")

_LOOPBACK = "回环地址 loopback address"
_PRIVATE = "内网地址 private address"
_LINK_LOCAL = "链路本地地址 link-local address"
_MULTICAST = "组播地址 multicast address"
_DOCUMENTATION = "文档示例地址 documentation address"
_METADATA = "云平台元数据地址 cloud metadata address"

# IANA IPv4 Special-Purpose Address Registry (every entry, whether or not it is marked globally
# reachable), plus multicast (224/4), the reserved 240/4 and the limited broadcast address.
IPV4_SPECIAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/32", "未指定地址 unspecified address"),
    ("0.0.0.0/8", "“本网络”地址 'this network' (0.0.0.0/8)"),
    ("10.0.0.0/8", _PRIVATE),
    ("100.64.0.0/10", "运营商级 NAT 共享地址 CGNAT shared address (100.64.0.0/10)"),
    ("127.0.0.0/8", _LOOPBACK),
    ("169.254.0.0/16", _LINK_LOCAL),
    ("172.16.0.0/12", _PRIVATE),
    ("192.0.0.0/24", "IETF 协议专用地址 IETF protocol assignment (192.0.0.0/24)"),
    ("192.0.2.0/24", f"{_DOCUMENTATION} (TEST-NET-1)"),
    ("192.31.196.0/24", "AS112 专用地址 AS112-v4 (192.31.196.0/24)"),
    ("192.52.193.0/24", "AMT 专用地址 AMT (192.52.193.0/24)"),
    ("192.88.99.0/24", "6to4 中继任播地址 deprecated 6to4 relay anycast (192.88.99.0/24)"),
    ("192.168.0.0/16", _PRIVATE),
    ("192.175.48.0/24", "AS112 直接委派地址 AS112 direct delegation (192.175.48.0/24)"),
    ("198.18.0.0/15", "基准测试地址 benchmarking address (198.18.0.0/15)"),
    ("198.51.100.0/24", f"{_DOCUMENTATION} (TEST-NET-2)"),
    ("203.0.113.0/24", f"{_DOCUMENTATION} (TEST-NET-3)"),
    ("224.0.0.0/4", _MULTICAST),
    ("240.0.0.0/4", "保留地址 reserved address (240.0.0.0/4)"),
    ("255.255.255.255/32", "广播地址 broadcast address"),
)

# IANA IPv6 Special-Purpose Address Registry, multicast, the deprecated site-local range, and
# (see classify) everything outside global unicast 2000::/3. ::ffff:0:0/96, 64:ff9b::/96 and
# 2002::/16 are not listed: they are judged by the IPv4 address they carry.
IPV6_SPECIAL: tuple[tuple[str, str], ...] = (
    ("::/128", "未指定地址 unspecified address"),
    ("::1/128", _LOOPBACK),
    ("::/96", "IPv4 兼容地址（已废弃，保留） deprecated IPv4-compatible address, reserved"),
    ("64:ff9b:1::/48", "本地 NAT64 地址 local-use NAT64 address (64:ff9b:1::/48)"),
    ("100::/64", "丢弃专用地址 discard-only address (100::/64)"),
    ("100:0:0:1::/64", "占位地址 dummy IPv6 prefix (100:0:0:1::/64)"),
    ("2001::/23", "IETF 协议专用地址 IETF protocol assignment (2001::/23, incl. Teredo)"),
    ("2001:db8::/32", _DOCUMENTATION),
    ("2620:4f:8000::/48", "AS112 直接委派地址 AS112 direct delegation (2620:4f:8000::/48)"),
    ("3fff::/20", _DOCUMENTATION),
    ("5f00::/16", "SRv6 段标识地址 SRv6 SIDs (5f00::/16)"),
    ("fc00::/7", f"{_PRIVATE} (unique local, fc00::/7)"),
    ("fe80::/10", _LINK_LOCAL),
    ("fec0::/10", "站点本地地址（已废弃） deprecated site-local address (fec0::/10)"),
    ("ff00::/8", _MULTICAST),
)

# Host-only addresses of cloud platforms: an instance reaches its platform's services there.
# Some lie inside the ranges above anyway; 168.63.129.16 is a public address.
HOST_ONLY: tuple[tuple[str, str], ...] = (
    ("169.254.169.254", _METADATA),  # AWS, GCP, Azure, Huawei Cloud, Oracle, OpenStack
    ("169.254.170.2", _METADATA),  # AWS ECS task metadata
    ("fd00:ec2::254", _METADATA),  # AWS IMDS over IPv6
    ("100.100.100.200", _METADATA),  # Alibaba Cloud
    ("169.254.0.23", _METADATA),  # Tencent Cloud
    ("168.63.129.16", "云平台宿主地址 cloud host address (Azure wire server 168.63.129.16)"),
)

IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def _ranges(table: Iterable[tuple[str, str]]) -> tuple[tuple[int, int, str], ...]:
    """(first, last, reason) as integers, most specific first so the narrower reason wins."""
    nets = [(ipaddress.ip_network(text), reason) for text, reason in table]
    nets.sort(key=lambda item: -item[0].prefixlen)
    return tuple((int(n.network_address), int(n.broadcast_address), reason) for n, reason in nets)


_V4_RANGES = _ranges(IPV4_SPECIAL)
_V6_RANGES = _ranges(IPV6_SPECIAL)
_HOST_ONLY = {ipaddress.ip_address(text): reason for text, reason in HOST_ONLY}

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
    if ip in _HOST_ONLY:
        return _HOST_ONLY[ip]
    number = int(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            form, v4 = embedded
            reason = classify(v4)
            if reason:
                return f"{reason}（{form} {v4}）"
            if form != "6to4":
                return None  # the IPv4 address it stands for is public
        ranges = _V6_RANGES
    else:
        ranges = _V4_RANGES
    for first, last, reason in ranges:
        if first <= number <= last:
            return reason
    if isinstance(ip, ipaddress.IPv6Address) and ip not in IPV6_GLOBAL_UNICAST:
        return "非全球单播地址（保留） reserved address outside global unicast 2000::/3"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if ip in IPV4_MAPPED:
        return "IPv4 映射地址 IPv4-mapped", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in NAT64:
        return "NAT64 地址 NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in SIX_TO_FOUR:
        return "6to4", ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
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
    target = check_url_offline(url, allow)
    if target is not None:
        return target
    scheme, host, port = _split(url)
    host = _idna(host)
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
    return Target(url, scheme, host, port, tuple(dict.fromkeys(checked)))


def check_url_offline(url: str, allowlist: Allowlist | Iterable[str] = ()) -> Target | None:
    """`check_url` without name resolution: the Target of an IP literal or an allowlisted name,
    None when the host is a name that must be resolved first; raises ForbiddenAddress."""
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
    return None


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
    """`host` as httpx sends it: lower case, non-ASCII names IDNA 2008-encoded."""
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host.lower()).decode("ascii")
    except UnicodeError:  # idna.IDNAError: refused as an invalid host name by the caller
        return host.lower()
