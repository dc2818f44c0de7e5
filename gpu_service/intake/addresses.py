"""Which hosts a fetch may reach. Every address a URL's host stands for is checked before any byte is sent.

Links come from strangers, so a link must not reach the bot's own machine, its network or the cloud
metadata service (SSRF), nor a service on an unusual port. Hosts are read the way the OS reads them
(decimal, octal, hex and short IPv4 forms), IPv6 wrappers around IPv4 addresses are unwrapped, and all
DNS answers are checked, not the first. The blocks refused are listed in `blocks.py`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Protocol

from yarl import URL

from gpu_service.intake.blocks import IPAddress, Rule, embedded_ipv4, special_block

ALLOWED_SCHEMES = ("http", "https")
WEB_PORTS = (80, 443)

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


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why a fetch may not go to `ip`, in a few words; None when it may.

    `allow_private` lets loopback and private networks through (for tests against a local server), but
    never link-local, metadata, multicast, documentation, reserved or any other special block.
    """
    inner = embedded_ipv4(ip)
    if inner is not None:
        problem = address_problem(inner, allow_private=allow_private)
        if problem is not None:
            return problem
    block = special_block(ip)
    if block is None or block.rule is Rule.WRAPPER:  # a wrapper's inner address passed just above
        return None
    if block.rule is Rule.PRIVATE and allow_private:
        return None
    return block.what


def port_problem(url: URL, *, allow_private: bool) -> str | None:
    """Why `url`'s port may not be used; None for 80 and 443 (or any port where private URLs are allowed)."""
    if allow_private or url.port in WEB_PORTS:
        return None
    return f"only the web ports 80 and 443 are allowed (this link uses port {url.port})"


async def check_url(url: str | URL, resolver: Resolver, *, allow_private: bool) -> tuple[str, ...]:
    """The addresses `url` may be fetched from, every one checked. Raises ValueError(reason) otherwise.

    The scheme, port and host are checked before any DNS question or connection.
    """
    url = url if isinstance(url, URL) else _parse_url(url)
    if url.scheme not in ALLOWED_SCHEMES:
        raise ValueError("only http and https links are allowed")
    host = url.raw_host
    if not host:
        raise ValueError("not a valid link")
    problem = port_problem(url, allow_private=allow_private)
    if problem is not None:
        raise ValueError(problem)
    addresses = await _addresses_of(host, url.port or 0, resolver)
    for ip in addresses:
        problem = address_problem(ip, allow_private=allow_private)
        if problem is not None:
            raise ValueError(f"{url.host} points to {problem} ({ip})")
    return tuple(str(ip) for ip in addresses)


def _parse_url(text: str) -> URL:
    try:
        return URL(text)
    except ValueError:
        raise ValueError("not a valid link") from None


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
