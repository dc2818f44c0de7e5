"""Which hosts a fetch may reach. Every address a URL's host stands for is checked before any byte is sent.

Links come from strangers, so a link must not reach the bot's own machine, its network or the cloud
metadata service (SSRF). Hosts are read the way the OS reads them (decimal, octal, hex and short IPv4
forms), IPv6 wrappers around IPv4 addresses are unwrapped, and all DNS answers are checked, not the first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Protocol

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")

# Never a place for a training photo, even where private addresses are allowed for tests.
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254")
)
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # Linux connects 0.0.0.0 to the local machine
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

_NUMBER_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$", re.IGNORECASE)


class Resolver(Protocol):
    """Turns a host name into addresses. Tests pass a stub; production uses SystemResolver."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` stands for; raise OSError when it does not resolve."""


class SystemResolver:
    """The operating system's resolver (getaddrinfo), run by the event loop."""

    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_ip_host(host: str) -> IPAddress | None:
    """The address a URL host spells, or None when it is a name. Raises ValueError for a bad number.

    IPv4 is read like inet_aton (and browsers) read it: 2130706433, 0177.0.0.1, 0x7f.0.0.1 and 127.1
    all mean 127.0.0.1. As in the WHATWG URL rules, a host whose last label is a number is an address.
    """
    try:
        if ":" in host:
            return ipaddress.IPv6Address(host.strip("[]").replace("%25", "%"))
        labels = host.rstrip(".").split(".")
        if not _NUMBER_LABEL.match(labels[-1]):
            return None
        return _parse_ipv4(labels)
    except ValueError:
        raise ValueError(f"not a valid address: {host}") from None


def _parse_ipv4(labels: list[str]) -> ipaddress.IPv4Address:
    if len(labels) > 4 or not all(_NUMBER_LABEL.match(label) for label in labels):
        raise ValueError("not an IPv4 address")
    *head, last = [_parse_number(label) for label in labels]
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        raise ValueError("IPv4 number out of range")
    value = last
    for position, byte in enumerate(head):
        value += byte << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def _parse_number(label: str) -> int:
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)
    return int(label)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64): the one a packet really reaches."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why a fetch may not go to `ip`, in a few words; None when it may.

    `allow_private` lets loopback and private networks through (for tests against a local server), but
    never link-local, metadata, multicast, unspecified or reserved addresses.
    """
    inner = embedded_ipv4(ip)
    if inner is not None:
        return address_problem(inner, allow_private=allow_private)
    never = _never_allowed(ip)
    if never is not None:
        return never
    if allow_private or ip.is_global:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip in _CGNAT:
        return "a carrier-grade NAT address"
    return "a private network address"


def _never_allowed(ip: IPAddress) -> str | None:
    if ip in _METADATA:
        return "the cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "an unspecified address"
    if ip.is_loopback:  # ::1 sits inside IPv6's reserved ::/8; it is judged with the private ones
        return None
    if ip.is_reserved or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
        return "a reserved address"
    return None


async def check_url(url: str | URL, resolver: Resolver, *, allow_private: bool) -> tuple[str, ...]:
    """The addresses `url` may be fetched from, every one checked. Raises ValueError(reason) otherwise."""
    url = url if isinstance(url, URL) else URL(url)
    if url.scheme not in ALLOWED_SCHEMES:
        raise ValueError("only http and https links are allowed")
    host = url.raw_host
    if not host:
        raise ValueError("not a valid link")
    addresses = await _addresses_of(host, url.port or 0, resolver)
    for ip in addresses:
        problem = address_problem(ip, allow_private=allow_private)
        if problem is not None:
            raise ValueError(f"{url.host} points to {problem} ({ip})")
    return tuple(str(ip) for ip in addresses)


async def _addresses_of(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    literal = parse_ip_host(host)
    if literal is not None:
        return [literal]
    if not _HOST_NAME.match(host):
        raise ValueError(f"not a valid host name: {host}")
    try:
        answers = await resolver.resolve(host, port)
    except OSError:
        raise ValueError(f"host not found: {host}") from None
    if not answers:
        raise ValueError(f"host not found: {host}")
    try:
        return [ipaddress.ip_address(answer) for answer in answers]
    except ValueError:
        raise ValueError(f"host not found: {host} (bad DNS answer)") from None
