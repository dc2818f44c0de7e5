"""The address rules on their own: which hosts a link may reach. No sockets are opened here."""

from __future__ import annotations

import ipaddress
import re

import pytest

from gpu_service.intake import SystemResolver, check_url
from gpu_service.intake.addresses import parse_ip_host
from gpu_service.intake.blocks import SPECIAL_BLOCKS, special_block

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


class StubResolver:
    """Answers from a table and remembers every question; a name not in the table does not resolve."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise OSError(f"no such host: {host}")
        return list(self.answers[host])


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.0.0.1", "127.0.0.1"),  # hex
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short forms
        ("127.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # trailing root dot
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("example.com", None),
        ("127.0.0.1.nip.io", None),  # a name: its DNS answers are what gets checked
    ],
)
def test_parse_ip_host_reads_every_spelling(host: str, expected: str | None) -> None:
    """Hosts written as numbers are read the way the OS's inet_aton reads them."""
    parsed = parse_ip_host(host)
    assert parsed == (None if expected is None else ipaddress.ip_address(expected))


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.0.0.1", "08.0.0.1", "1.2.3.999", "::1::1"])
def test_parse_ip_host_rejects_bad_numbers(host: str) -> None:
    """A host that looks numeric but is no address is an error, not a name to look up."""
    with pytest.raises(ValueError, match="not a valid address"):
        parse_ip_host(host)


REFUSED = [
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.0.1/x.png", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped IPv6
    ("http://[::ffff:a9fe:a9fe]/", "metadata"),  # 169.254.169.254, mapped
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 around 127.0.0.1
    ("http://[64:ff9b::a00:1]/", "private"),  # NAT64 around 10.0.0.1
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "broadcast"),
]


@pytest.mark.parametrize(("url", "kind"), REFUSED)
async def test_non_public_addresses_are_refused(url: str, kind: str) -> None:
    """Every non-public spelling is refused, and literal addresses never reach the resolver."""
    resolver = StubResolver()
    with pytest.raises(ValueError, match=kind):
        await check_url(url, resolver, allow_private=False)
    assert resolver.calls == []


@pytest.mark.parametrize(
    "url", [f"http://{PUBLIC_V4}/a.png", f"https://[{PUBLIC_V6}]/a.png", "https://8.8.8.8:443/", "http://8.8.8.8:80/"]
)
async def test_public_addresses_are_allowed(url: str) -> None:
    """Public IPv4 and IPv6 addresses pass and are returned for the connection to use."""
    addresses = await check_url(url, StubResolver(), allow_private=False)
    assert len(addresses) == 1
    assert ipaddress.ip_address(addresses[0]).is_global


async def test_every_dns_answer_is_checked_not_just_the_first() -> None:
    """One private address among public ones refuses the host."""
    resolver = StubResolver({"mixed.test": [PUBLIC_V4, PUBLIC_V6, "10.0.0.1"]})
    with pytest.raises(ValueError, match=r"mixed\.test points to a private network address \(10\.0\.0\.1\)"):
        await check_url("http://mixed.test/a.png", resolver, allow_private=False)


async def test_a_name_with_only_public_answers_is_allowed() -> None:
    resolver = StubResolver({"cdn.test": [PUBLIC_V4, PUBLIC_V6]})
    assert await check_url("https://cdn.test/a.png", resolver, allow_private=False) == (PUBLIC_V4, PUBLIC_V6)
    assert resolver.calls == ["cdn.test"]


# One address in every block of the IANA special-purpose registries (and multicast, and the metadata
# addresses), with the words the refusal uses. A resolver answers each one for an ordinary name.
SPECIAL_ADDRESSES = [
    ("0.0.0.1", "unspecified"),
    ("10.1.2.3", "private network"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("127.0.0.2", "loopback"),
    ("169.254.1.1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("168.63.129.16", "cloud metadata"),  # Azure wire server: a public address all the same
    ("100.100.100.200", "cloud metadata"),
    ("172.31.255.255", "private network"),
    ("192.0.0.8", "IETF protocol"),
    ("192.0.0.9", "IETF protocol"),  # PCP anycast: "globally reachable" in the registry, still no photo
    ("192.0.2.1", "documentation"),
    ("192.31.196.1", "AS112"),
    ("192.52.193.1", "AMT relay"),
    ("192.88.99.1", "6to4 relay"),
    ("192.168.0.1", "private network"),
    ("192.175.48.1", "AS112"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:10.0.0.1", "private network"),  # IPv4-mapped: the IPv4 address inside is judged
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:192.0.2.1", "documentation"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::7f00:1", "reserved"),  # IPv4-compatible (deprecated)
    ("64:ff9b::c633:6401", "documentation"),  # NAT64 around 198.51.100.1
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 around 169.254.169.254
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b:1::5db8:d822", "local NAT64"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy"),
    ("2001::1", "IETF protocol"),  # Teredo
    ("2001:2::1", "IETF protocol"),  # benchmarking
    ("2001:20::1", "IETF protocol"),  # ORCHIDv2
    ("2001:1ff::1", "IETF protocol"),
    ("2001:db8::1", "documentation"),
    ("2002:5db8:d822::1", "6to4"),  # 6to4 around a public address: the block itself is refused
    ("2002:a9fe:a9fe::", "cloud metadata"),  # 6to4 around 169.254.169.254: the inner address named
    ("2002:c000:201::", "documentation"),
    ("2620:4f:8000::1", "AS112"),
    ("3fff::1", "documentation"),
    ("5f00::1", "segment routing"),
    ("fc00::1", "private network"),
    ("fd12:3456::1", "private network"),
    ("fd00:ec2::254", "cloud metadata"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
]

# Ordinary addresses, some just outside a special block, and the wrappers a resolver really hands out.
PUBLIC_ADDRESSES = [
    PUBLIC_V4,
    PUBLIC_V6,
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.1",
    "198.17.255.255",
    "198.20.0.1",
    "223.255.255.254",
    "::ffff:93.184.216.34",  # IPv4-mapped public address
    "64:ff9b::5db8:d822",  # NAT64 (DNS64) around a public address: how IPv6-only hosts reach IPv4 sites
    "2001:200::1",  # just past 2001::/23
    "2606:4700::1111",
]


@pytest.mark.parametrize(("answer", "kind"), SPECIAL_ADDRESSES)
async def test_every_special_purpose_block_is_refused(answer: str, kind: str) -> None:
    """A name whose DNS answer lies in a special block is refused, and the reason names the block."""
    resolver = StubResolver({"photos.test": [answer]})
    shown = re.escape(str(ipaddress.ip_address(answer)))
    with pytest.raises(ValueError, match=rf"^photos\.test points to .*{kind}.* \({shown}\)$"):
        await check_url("http://photos.test/a.png", resolver, allow_private=False)


@pytest.mark.parametrize("answer", PUBLIC_ADDRESSES)
async def test_public_answers_are_allowed(answer: str) -> None:
    resolver = StubResolver({"photos.test": [answer]})
    addresses = await check_url("https://photos.test/a.png", resolver, allow_private=False)
    assert addresses == (str(ipaddress.ip_address(answer)),)


def test_every_block_in_the_table_has_a_case_above() -> None:
    """A block added to the table without a refusal case here fails, so the table stays proven."""
    answers = [ipaddress.ip_address(answer) for answer, _ in SPECIAL_ADDRESSES]
    untested = [str(b.network) for b in SPECIAL_BLOCKS if not any(special_block(a) == b for a in answers)]
    assert untested == []


@pytest.mark.parametrize(
    ("answer", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.0.0.1", True),
        ("fc00::1", True),
        ("100.64.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("169.254.169.254", False),  # metadata and link-local are never a place for a photo
        ("168.63.129.16", False),
        ("fd00:ec2::254", False),  # inside fc00::/7, but the metadata address wins
        ("fe80::1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("2001:db8::1", False),
        ("2002:7f00:1::", False),  # 6to4, even around loopback
        ("64:ff9b:1::1", False),
    ],
)
async def test_allow_private_lifts_only_loopback_and_private_networks(answer: str, allowed: bool) -> None:
    """allow_private is for tests against a local server; it does not open the metadata service."""
    resolver = StubResolver({"local.test": [answer]})
    if allowed:
        addresses = await check_url("http://local.test/", resolver, allow_private=True)
        assert addresses == (str(ipaddress.ip_address(answer)),)
    else:
        with pytest.raises(ValueError, match="points to"):
            await check_url("http://local.test/", resolver, allow_private=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.png", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("/etc/passwd", "only http and https"),
        ("http://1.2.3.4.5/", "not a valid address"),
        ("http://exa mple.com/", "not a valid host name"),
        ("http://nowhere.test/", "host not found"),
    ],
)
async def test_bad_links_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        await check_url(url, StubResolver(), allow_private=False)


async def test_system_resolver_answers_numeric_hosts_without_dns() -> None:
    """The default resolver uses the loop's getaddrinfo; a numeric host needs no DNS server."""
    assert await SystemResolver().resolve("127.0.0.1", 80) == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("url", "port"),
    [("http://photos.test:8080/a.png", 8080), ("https://photos.test:8443/", 8443), ("http://photos.test:22/", 22)],
)
async def test_ports_other_than_80_and_443_are_refused_before_any_lookup(url: str, port: int) -> None:
    resolver = StubResolver({"photos.test": [PUBLIC_V4]})
    reason = rf"^only the web ports 80 and 443 are allowed \(this link uses port {port}\)$"
    with pytest.raises(ValueError, match=reason):
        await check_url(url, resolver, allow_private=False)
    assert resolver.calls == []


@pytest.mark.parametrize(
    "url", ["http://photos.test/", "https://photos.test/", "http://photos.test:443/", "https://photos.test:80/"]
)
async def test_ports_80_and_443_are_allowed_with_either_scheme(url: str) -> None:
    resolver = StubResolver({"photos.test": [PUBLIC_V4]})
    assert await check_url(url, resolver, allow_private=False) == (PUBLIC_V4,)


async def test_allow_private_lifts_the_port_rule() -> None:
    """ALLOW_PRIVATE_URLS is for tests against a local server, which listens on a random port."""
    resolver = StubResolver({"photos.test": [PUBLIC_V4]})
    assert await check_url("http://photos.test:8080/", resolver, allow_private=True) == (PUBLIC_V4,)
