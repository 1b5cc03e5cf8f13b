import asyncio
import ipaddress
import socket
import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.callbacks import make_http_client
from activities.pinned_http import HTTPFailure
from config.settings import Settings
from rules.address_guard import (
    HOST_ONLY,
    IPV4_SPECIAL,
    IPV6_SPECIAL,
    Allowlist,
    ForbiddenAddress,
    ResolutionError,
    Target,
    check_url,
    check_url_offline,
    classify,
    parse_numeric_host,
    system_resolver,
)


def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"must not resolve {host}")


def fake_dns(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise ResolutionError(f"NXDOMAIN {host}")
        return table[host]

    return resolve


FORBIDDEN_LITERALS = {
    "http://127.0.0.1/hooks/x": "loopback",
    "http://10.0.0.1/": "private",
    "http://169.254.169.254/latest/meta-data/": "metadata",
    "http://[::1]:8080/": "loopback",
    "http://[fc00::1]/": "private",
    "http://100.64.0.1/": "CGNAT",
    "http://0x7f000001/": "127.0.0.1",
    "http://2130706433/": "127.0.0.1",
    "http://0177.0.0.1/": "127.0.0.1",
    "http://127.1/": "127.0.0.1",
    "http://0x7f.0.0.1/": "127.0.0.1",
    "http://017700000001/": "127.0.0.1",
    "http://[::ffff:127.0.0.1]/": "IPv4-mapped",
    "http://[::ffff:a9fe:a9fe]/": "metadata",
    "http://[64:ff9b::a00:1]/": "NAT64",
    "http://[2002:a9fe:a9fe::]/": "6to4",
    "http://[fd00:ec2::254]/": "metadata",
    "http://100.100.100.200/": "metadata",
    "http://0.0.0.0:8789/": "unspecified",
    "http://[::]/": "unspecified",
    "http://192.168.1.20/": "private",
    "http://172.16.5.4/": "private",
    "http://[fe80::1]/": "link-local",
    "http://169.254.10.10/": "link-local",
    "http://224.0.0.1/": "multicast",
    "http://[ff02::1]/": "multicast",
    "http://255.255.255.255/": "broadcast",
    "http://240.0.0.1/": "240.0.0.1",
    "http://198.18.0.1/": "198.18.0.1",
    "http://192.0.2.10/": "documentation",
    "http://[::7f00:1]/": "reserved",
    "https://[2001:db8::1]/": "documentation",
    # IANA special-purpose entries the interpreter's tables have missed in some releases
    "http://192.0.0.192/": "192.0.0.0/24",
    "http://192.0.0.8/": "192.0.0.0/24",
    "http://192.0.0.9/": "192.0.0.0/24",
    "http://192.31.196.1/": "AS112",
    "http://192.52.193.1/": "AMT",
    "http://192.88.99.1/": "6to4 relay",
    "http://192.175.48.1/": "AS112",
    "http://198.51.100.7/": "TEST-NET-2",
    "http://203.0.113.9/": "TEST-NET-3",
    "http://[fec0::1]/": "site-local",
    "http://[100::1]/": "discard-only",
    "http://[2001::1]/": "2001::/23",  # Teredo
    "http://[2001:2::1]/": "2001::/23",  # benchmarking
    "http://[64:ff9b:1::a00:1]/": "local-use NAT64",
    "http://[64:ff9b::a9fe:a9fe]/": "metadata",
    "http://[2002:c0a8:101::1]/": "6to4 192.168.1.1",
    "http://[2620:4f:8000::1]/": "AS112",
    "http://[3fff::1]/": "documentation",
    "http://[5f00::1]/": "SRv6",
    "http://[4000::1]/": "2000::/3",
    "http://[::ffff:0:a00:1]/": "2000::/3",  # IPv4-translated (SIIT)
    # cloud host-only addresses
    "http://168.63.129.16/": "Azure wire server",
    "http://[::ffff:168.63.129.16]/": "Azure wire server",
    "http://169.254.170.2/v2/credentials": "metadata",
    "http://169.254.0.23/": "metadata",
}

PUBLIC_LITERALS = [
    "http://8.8.8.8/", "https://[2606:4700::1]/", "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::808:808]/", "http://[2002:808:808::1]/", "http://1.0.0.1/",
    "http://[2a00:1450:4001::1]/", "http://223.255.255.1/", "http://100.63.255.255/",
    "http://100.128.0.0/", "http://172.32.0.1/", "http://192.0.1.255/", "http://192.0.3.0/",
]


@pytest.mark.parametrize("url,why", FORBIDDEN_LITERALS.items())
def test_forbidden_addresses_are_refused_without_resolving(url, why):
    with pytest.raises(ForbiddenAddress) as info:
        check_url(url, [], no_dns)
    assert why in info.value.reason


@pytest.mark.parametrize("url", PUBLIC_LITERALS)
def test_public_addresses_pass(url):
    target = check_url(url, [], no_dns)
    assert target.addresses == (target.host,) and not target.allowlisted


def test_ranges_do_not_depend_on_the_interpreters_tables(monkeypatch):
    """The guard's verdicts come from its own range tables: with every `ipaddress` flag
    patched to "public", the special-purpose addresses are still refused."""
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        for flag in ("is_private", "is_reserved", "is_loopback", "is_link_local", "is_multicast",
                     "is_unspecified", "is_site_local"):
            if hasattr(cls, flag):
                monkeypatch.setattr(cls, flag, property(lambda self: False))
        monkeypatch.setattr(cls, "is_global", property(lambda self: True))
    for url in ("http://10.0.0.1/", "http://127.0.0.1/", "http://192.0.0.192/", "http://[fec0::1]/",
                "http://[::1]/", "http://[fe80::1]/", "http://224.0.0.1/", "http://0.0.0.0/",
                "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(ForbiddenAddress):
            check_url(url, [], no_dns)


def test_every_range_of_the_tables_is_refused_at_both_ends():
    for table in (IPV4_SPECIAL, IPV6_SPECIAL):
        for text, _ in table:
            net = ipaddress.ip_network(text)
            for ip in (net.network_address, net.broadcast_address):
                assert classify(ip) is not None, (text, ip)
    for text, _ in HOST_ONLY:
        assert classify(ipaddress.ip_address(text)) is not None, text


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_whatever_the_interpreter_calls_non_global_is_refused_too(number):
    """Our tables cover at least what this Python's `ipaddress` considers non-global; the
    embedded-IPv4 forms are judged by the address they carry instead."""
    ip = ipaddress.IPv6Address(number)
    embedded = None
    if ip.ipv4_mapped is not None or ip in ipaddress.ip_network("64:ff9b::/96"):
        embedded = ipaddress.IPv4Address(number & 0xFFFFFFFF)
    elif ip.sixtofour is not None:
        embedded = ip.sixtofour
    if embedded is not None:
        if classify(embedded) is not None:
            assert classify(ip) is not None
        return
    if not ip.is_global:
        assert classify(ip) is not None, ip
    v4 = ipaddress.IPv4Address(number & 0xFFFFFFFF)
    if not v4.is_global or v4.is_multicast:
        assert classify(v4) is not None, v4


def test_a_name_resolving_to_a_private_address_is_refused():
    dns = fake_dns({"hooks.evil.example": ["10.1.2.3"]})
    with pytest.raises(ForbiddenAddress, match="10.1.2.3"):
        check_url("https://hooks.evil.example/cb", [], dns)


def test_every_resolved_record_is_checked():
    dns = fake_dns({"mixed.example": ["93.184.216.34", "2606:4700::1", "::ffff:192.168.0.1"]})
    with pytest.raises(ForbiddenAddress, match="192.168.0.1"):
        check_url("https://mixed.example/cb", [], dns)


def test_real_localhost_is_refused():
    with pytest.raises(ForbiddenAddress, match="回环|loopback"):
        check_url("http://localhost:8789/hooks/court", [], system_resolver)


def test_public_names_pass_and_are_pinned_to_the_checked_addresses():
    dns = fake_dns({"hooks.court.example.gov.cn": ["93.184.216.34", "2606:4700::1"]})
    target = check_url("https://HOOKS.court.example.gov.cn./cb?x=1", [], dns)
    assert target.host == "hooks.court.example.gov.cn"
    assert target.addresses == ("93.184.216.34", "2606:4700::1")
    assert target.port == 443 and not target.allowlisted
    assert check_url("http://8.8.8.8:8080/x", [], no_dns).addresses == ("8.8.8.8",)


def test_unicode_host_names_are_resolved_in_idna_form():
    seen = []

    def dns(host, port):
        seen.append(host)
        return ["93.184.216.34"]

    check_url("https://回调.例子.中国/hooks", [], dns)
    assert seen == ["xn--zbss05j.xn--fsqu00a.xn--fiqs8s"]


IDNA_NAMES = ["faß.example", "FAß.Example", "回调.例子.中国", "Bücher.example", "ΣΊΣΥΦΟΣ.example",
              "xn--fa-hia.example", "hooks.court.example.gov.cn"]


@pytest.mark.parametrize("name", IDNA_NAMES)
def test_names_are_encoded_exactly_as_the_http_client_sends_them(name):
    """IDNA 2008 as httpx does it (faß is xn--fa-hia, not IDNA 2003's fass): the name checked
    and resolved is the name the request is sent for, and the pinned connection must match it."""
    url = f"https://{name}/hooks"
    wire = httpx.URL(url).raw_host.decode("ascii")
    seen = []

    def dns(host, port):
        seen.append(host)
        return ["93.184.216.34"]

    assert check_url(url, [], dns).host == wire and seen == [wire]
    assert check_url_offline(url, [name]).host == wire, "an allowlisted name, written as typed"


@pytest.mark.parametrize("name", ["ﬁle.example", "☃.example", "a\u200db.example"])
def test_names_the_http_client_refuses_are_refused(name):
    url = f"https://{name}/hooks"
    with pytest.raises(httpx.InvalidURL):
        httpx.URL(url)
    with pytest.raises(ForbiddenAddress, match="invalid host"):
        check_url(url, [], no_dns)


def test_sharp_s_is_not_folded_to_ss():
    assert check_url_offline("https://faß.example/", ["faß.example"]).host == "xn--fa-hia.example"
    assert check_url_offline("https://fass.example/", ["faß.example"]) is None, "fass is another name"
    assert check_url_offline("https://faß.example/", ["fass.example"]) is None


def test_offline_check_never_resolves():
    assert check_url_offline("http://8.8.8.8:8080/x").addresses == ("8.8.8.8",)
    assert check_url_offline("http://hooks.example/x") is None, "a name: needs a look-up"
    assert check_url_offline("http://receiver.local/x", ["receiver.local"]).allowlisted
    with pytest.raises(ForbiddenAddress):
        check_url_offline("http://10.0.0.1/")
    with pytest.raises(ForbiddenAddress, match="invalid host"):
        check_url_offline("http://☃.example/")


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "file:///etc/passwd", "gopher://example.com/", "javascript:alert(1)",
    "http:///nohost", "http://user:pw@example.com/", "http://example.com@10.0.0.1/",
    "http://exa mple.com/", "http://example.com\\@10.0.0.1/", "http://[fe80::1%25eth0]/",
    "http://1.2.3.4.5/", "http://256.1.1.1/", "http://%31%32%37.0.0.1/", "http://example.com:0/",
    "http://0x1.0x1.0x1.0x100/",
])
def test_malformed_or_disallowed_urls_are_refused(url):
    with pytest.raises(ForbiddenAddress):
        check_url(url, [], fake_dns({"example.com": ["93.184.216.34"]}))


def test_non_canonical_spelling_of_a_public_address_is_refused_too():
    with pytest.raises(ForbiddenAddress, match="8.8.8.8"):
        check_url("http://134744072/", [], no_dns)


def test_resolution_failures_are_reported_as_such():
    with pytest.raises(ResolutionError):
        check_url("https://nowhere.example/", [], fake_dns({}))
    with pytest.raises(ResolutionError):
        check_url("https://empty.example/", [], fake_dns({"empty.example": []}))


def test_allowlist_accepts_ip_literals_names_and_networks():
    assert check_url("http://127.0.0.1:8789/hooks/court", ["127.0.0.1"], no_dns).allowlisted
    assert check_url("http://[::1]:8789/hooks/court", ["[::1]"], no_dns).allowlisted
    # an allowlisted name is trusted without resolving it
    named = check_url("http://LocalHost:8789/hooks/court", ["localhost"], no_dns)
    assert named.allowlisted and named.addresses == ()
    # a network entry admits addresses inside it, whatever name leads there
    dns = fake_dns({"intranet.gov.example": ["10.20.1.5"]})
    assert check_url("http://intranet.gov.example/h", ["10.20.0.0/16"], dns).addresses == ("10.20.1.5",)
    with pytest.raises(ForbiddenAddress):
        check_url("http://10.30.0.1/h", ["10.20.0.0/16"], no_dns)


def test_allowlist_does_not_widen_beyond_its_entries():
    allow = Allowlist.parse(["127.0.0.1", "receiver.local"])
    for url in ("http://127.0.0.2/", "http://[::1]/", "http://10.0.0.1/", "http://2130706433/"):
        with pytest.raises(ForbiddenAddress):
            check_url(url, allow, no_dns)
    # localhost resolves to 127.0.0.1 and usually ::1; ::1 is not allowlisted
    dns = fake_dns({"localhost": ["127.0.0.1", "::1"]})
    with pytest.raises(ForbiddenAddress, match="::1"):
        check_url("http://localhost/", allow, dns)


def test_parse_numeric_host_follows_inet_aton():
    cases = {
        "127.0.0.1": ("127.0.0.1", True),
        "0x7f000001": ("127.0.0.1", False),
        "2130706433": ("127.0.0.1", False),
        "0177.0.0.1": ("127.0.0.1", False),
        "127.1": ("127.0.0.1", False),
        "10.1.256": ("10.1.1.0", False),
        "0": ("0.0.0.0", False),
    }
    for host, (address, canonical) in cases.items():
        ip, is_canonical = parse_numeric_host(host)
        assert (str(ip), is_canonical) == (address, canonical), host
    assert parse_numeric_host("example.com") is None
    assert parse_numeric_host("1e100.net") is None
    with pytest.raises(ValueError):
        parse_numeric_host("1.2.3.999")
    with pytest.raises(ValueError):
        parse_numeric_host("09.1.1.1")


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_ipv4_address_is_judged_the_same_in_any_spelling(number):
    ip = ipaddress.IPv4Address(number)
    reason = classify(ip)
    if reason is None:
        assert check_url(f"http://{ip}/", [], no_dns).addresses == (str(ip),)
    else:
        with pytest.raises(ForbiddenAddress):
            check_url(f"http://{ip}/", [], no_dns)
    for spelling in (str(number), hex(number), "0" + oct(number)[2:]):
        if spelling == str(ip):
            continue
        with pytest.raises(ForbiddenAddress):
            check_url(f"http://{spelling}/", [], no_dns)
    if reason is not None:
        assert classify(ipaddress.IPv6Address(f"::ffff:{ip}")) is not None
        assert classify(ipaddress.IPv6Address(f"64:ff9b::{ip}")) is not None


def test_classify_public_addresses():
    for text in ("8.8.8.8", "93.184.216.34", "2606:4700::1", "2a00:1450:4001::1"):
        assert classify(ipaddress.ip_address(text)) is None, text


# --- the pinned connection: DNS rebinding over https ---------------------------------------------


def _self_signed(name: str, folder) -> tuple[str, str, str]:
    """(cert file, key file, cert PEM) of a self-signed certificate for `name`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_text(pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file), pem


async def _listen_pair(handler, decoy, server_ssl):
    """The real endpoint on 127.0.0.2 (TLS) and a decoy on 127.0.0.1, on the same port."""
    for _ in range(20):
        real = await asyncio.start_server(handler, "127.0.0.2", 0, ssl=server_ssl)
        port = real.sockets[0].getsockname()[1]
        try:
            fake = await asyncio.start_server(decoy, "127.0.0.1", port)
        except OSError:
            real.close()
            continue
        return real, fake, port
    raise RuntimeError("no free port pair")


async def test_a_rebinding_name_is_connected_to_the_first_checked_address(tmp_path, monkeypatch):
    """The name's first answer (127.0.0.2, allowlisted here as a stand-in for a public address)
    is checked; every later answer is 127.0.0.1, where a decoy listens. The request goes to the
    checked address, with the name as Host header and TLS SNI, and the certificate is verified
    against the name; without the pin, the client refuses to connect at all."""
    name = "hooks.rebind.test"
    cert_file, key_file, pem = _self_signed(name, tmp_path)
    server_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ssl.load_cert_chain(cert_file, key_file)
    sni: list[str | None] = []
    server_ssl.sni_callback = lambda sock, server_name, ctx: sni.append(server_name)
    hosts: list[str] = []
    decoy_hits: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                hosts.append(headers["host"])
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def decoy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoy_hits.append("connected")
        writer.close()

    answers: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        answers.append(host)
        return ["127.0.0.2"] if len(answers) == 1 else ["127.0.0.1"]

    real_getaddrinfo = socket.getaddrinfo

    def system_dns(host, port, *args, **kwargs):  # what the HTTP client would get, were it to ask
        if host == name:
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", system_dns)
    real, fake, port = await _listen_pair(handle, decoy, server_ssl)
    url = f"https://{name}:{port}/hooks/court"
    allow = Allowlist.parse(["127.0.0.2"])
    client_ssl = ssl.create_default_context(cadata=pem)
    try:
        async with make_http_client(Settings(), verify=client_ssl) as http:
            target = check_url(url, allow, rebinding)
            assert target.addresses == ("127.0.0.2",)
            first = await http.post(target, b"{}", {})
            second = await http.post(target, b"{}", {})  # on the kept-alive connection
            assert (first.status, second.status) == (204, 204) and http.connections_opened == 1
            with pytest.raises(ForbiddenAddress, match="127.0.0.1"):
                check_url(url, allow, rebinding)  # the name has rebound meanwhile
            # the system resolver (what a client resolving the name itself would use) says 127.0.0.1
            assert {info[4][0] for info in socket.getaddrinfo(name, port)} == {"127.0.0.1"}
            other = f"https://other.rebind.test:{port}/"
            with pytest.raises(HTTPFailure, match="CERTIFICATE_VERIFY_FAILED"):
                # pinned to the same address, but the certificate names another host
                await http.post(Target(other, "https", "other.rebind.test", port, ("127.0.0.2",)), b"{}", {})
            with pytest.raises(HTTPFailure, match="was not checked"):
                await http.post(Target(url, "https", name, port + 1, ("127.0.0.2",)), b"{}", {})
    finally:
        for server in (real, fake):
            server.close()
            await server.wait_closed()
    assert hosts == [f"{name}:{port}", f"{name}:{port}"]
    assert decoy_hits == []
    assert sni == [name, "other.rebind.test"], "SNI is the name, not the address; one TLS session for two requests"
