import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.address_guard import (
    Allowlist,
    ForbiddenAddress,
    ResolutionError,
    check_url,
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
    "http://192.0.2.10/": "private",
    "http://[::7f00:1]/": "reserved",
    "https://[2001:db8::1]/": "private",
}


@pytest.mark.parametrize("url,why", FORBIDDEN_LITERALS.items())
def test_forbidden_addresses_are_refused_without_resolving(url, why):
    with pytest.raises(ForbiddenAddress) as info:
        check_url(url, [], no_dns)
    assert why in info.value.reason


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
    assert seen == ["回调.例子.中国".encode("idna").decode()] and seen[0].startswith("xn--")


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
