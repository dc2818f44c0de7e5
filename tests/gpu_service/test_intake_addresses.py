"""The address rules on their own: which hosts a link may reach. No sockets are opened here."""

from __future__ import annotations

import ipaddress

import pytest

from gpu_service.intake import SystemResolver, check_url
from gpu_service.intake.addresses import parse_ip_host

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
    ("http://127.0.0.1:8080/x.png", "loopback"),
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
    ("http://255.255.255.255/", "reserved"),
]


@pytest.mark.parametrize(("url", "kind"), REFUSED)
async def test_non_public_addresses_are_refused(url: str, kind: str) -> None:
    """Every non-public spelling is refused, and literal addresses never reach the resolver."""
    resolver = StubResolver()
    with pytest.raises(ValueError, match=kind):
        await check_url(url, resolver, allow_private=False)
    assert resolver.calls == []


@pytest.mark.parametrize(
    "url", [f"http://{PUBLIC_V4}/a.png", f"https://[{PUBLIC_V6}]/a.png", "http://8.8.8.8:8080/"]
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


@pytest.mark.parametrize(
    ("answer", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.0.0.1", True),
        ("fc00::1", True),
        ("169.254.169.254", False),  # metadata and link-local are never a place for a photo
        ("fe80::1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
async def test_allow_private_lifts_only_loopback_and_private_networks(answer: str, allowed: bool) -> None:
    """allow_private is for tests against a local server; it does not open the metadata service."""
    resolver = StubResolver({"local.test": [answer]})
    if allowed:
        assert await check_url("http://local.test/", resolver, allow_private=True) == (answer,)
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
