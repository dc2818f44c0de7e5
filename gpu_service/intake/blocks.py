"""Every address block a training photo can never come from, with why.

Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries
(https://www.iana.org/assignments/iana-ipv4-special-registry/,
https://www.iana.org/assignments/iana-ipv6-special-registry/), the multicast ranges of the IPv4 and
IPv6 address space registries, and the cloud providers' metadata addresses. Python's `ipaddress`
flags (is_private, is_global) change between Python releases and miss some of these, so the table is
written out here and is the whole rule.

Every block of the registries is refused, including the few the registry calls globally reachable
(AS112, AMT, anycast relays): none of them serves a photo. The exceptions are the two wrappers a
resolver really hands out for ordinary IPv4 hosts, IPv4-mapped and the NAT64 well-known prefix: a
packet to those goes to the IPv4 address inside, so that address is judged instead.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Rule(enum.Enum):
    NEVER = "never"  # refused even where ALLOW_PRIVATE_URLS lets loopback and private networks through
    PRIVATE = "private"  # loopback and private networks: ALLOW_PRIVATE_URLS lifts it, for loopback tests
    WRAPPER = "wrapper"  # carries an IPv4 address that is what a packet reaches: judge that one


@dataclass(frozen=True)
class Block:
    network: IPNetwork
    what: str  # completes "<host> points to ...": "a loopback address"
    rule: Rule


def _block(cidr: str, what: str, rule: Rule = Rule.NEVER) -> Block:
    return Block(ipaddress.ip_network(cidr), what, rule)


METADATA = "the cloud metadata address"
# Single addresses come first in the lookup (longest prefix wins), so these beat their enclosing blocks.
CLOUD_METADATA = (
    _block("169.254.169.254/32", METADATA),  # AWS, GCP, Azure, Oracle, DigitalOcean
    _block("168.63.129.16/32", METADATA),  # Azure wire server: a public address, so named here
    _block("100.100.100.200/32", METADATA),  # Alibaba Cloud
    _block("fd00:ec2::254/128", METADATA),  # AWS over IPv6
)

IPV4_SPECIAL = (
    _block("0.0.0.0/8", "an unspecified address"),  # "this network"; Linux connects 0.0.0.0 to itself
    _block("10.0.0.0/8", "a private network address", Rule.PRIVATE),
    _block("100.64.0.0/10", "a carrier-grade NAT address", Rule.PRIVATE),
    _block("127.0.0.0/8", "a loopback address", Rule.PRIVATE),
    _block("169.254.0.0/16", "a link-local address"),
    _block("172.16.0.0/12", "a private network address", Rule.PRIVATE),
    _block("192.0.0.0/24", "an IETF protocol address"),  # DS-Lite, NAT64 discovery, PCP/TURN anycast
    _block("192.0.2.0/24", "a documentation address"),
    _block("192.31.196.0/24", "an AS112 DNS address"),
    _block("192.52.193.0/24", "an AMT relay address"),
    _block("192.88.99.0/24", "a 6to4 relay address"),
    _block("192.168.0.0/16", "a private network address", Rule.PRIVATE),
    _block("192.175.48.0/24", "an AS112 DNS address"),
    _block("198.18.0.0/15", "a benchmarking address"),
    _block("198.51.100.0/24", "a documentation address"),
    _block("203.0.113.0/24", "a documentation address"),
    _block("224.0.0.0/4", "a multicast address"),
    _block("240.0.0.0/4", "a reserved address"),
    _block("255.255.255.255/32", "the broadcast address"),
)

IPV6_SPECIAL = (
    _block("::/128", "an unspecified address"),
    _block("::1/128", "a loopback address", Rule.PRIVATE),
    _block("::ffff:0:0/96", "an IPv4-mapped address", Rule.WRAPPER),
    _block("::/8", "a reserved address"),  # the rest: IPv4-compatible and unassigned
    _block("64:ff9b::/96", "a NAT64 address", Rule.WRAPPER),
    _block("64:ff9b:1::/48", "a local NAT64 address"),
    _block("100::/64", "a discard-only address"),
    _block("100:0:0:1::/64", "a dummy address"),
    _block("2001::/23", "an IETF protocol address"),  # Teredo, benchmarking, ORCHID, AMT, AS112, ...
    _block("2001:db8::/32", "a documentation address"),
    _block("2002::/16", "a 6to4 address"),  # deprecated (RFC 7526); its inner IPv4 is judged first
    _block("2620:4f:8000::/48", "an AS112 DNS address"),
    _block("3fff::/20", "a documentation address"),
    _block("5f00::/16", "a segment routing address"),
    _block("fc00::/7", "a private network address", Rule.PRIVATE),  # unique local
    _block("fe80::/10", "a link-local address"),
    _block("fec0::/10", "a site-local address"),  # deprecated, still routed inside some networks
    _block("ff00::/8", "a multicast address"),
)

SPECIAL_BLOCKS: tuple[Block, ...] = tuple(
    sorted(CLOUD_METADATA + IPV4_SPECIAL + IPV6_SPECIAL, key=lambda block: -block.network.prefixlen)
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def special_block(ip: IPAddress) -> Block | None:
    """The most specific block `ip` falls in, or None for an ordinary public address."""
    plain = ipaddress.IPv6Address(int(ip)) if isinstance(ip, ipaddress.IPv6Address) else ip  # drop %scope
    for block in SPECIAL_BLOCKS:
        if plain.version == block.network.version and plain in block.network:
            return block
    return None


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
