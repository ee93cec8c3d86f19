"""Which network addresses a URL input may be fetched from.

A Salad node is a consumer machine on a home network, with an instance-metadata service at
169.254.169.254 that can reallocate it: a caller's URL must reach only the public internet, or
networks the operator names in SALADCOG_FETCH_ALLOW_NETWORKS. Addresses are judged after name
resolution, so every spelling of one (a name, 2852039166, 0xa9fea9fe, ::ffff:169.254.169.254)
is judged alike.

Python's `ipaddress.is_global` alone is not enough: on Python 3.11 it calls multicast, fec0::/10,
::127.0.0.1 and every NAT64 and 6to4 address global. IPv6 forms that carry an IPv4 address are
judged by that IPv4 address.
"""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_ENV = "SALADCOG_FETCH_ALLOW_NETWORKS"

# IPv6 prefixes whose last 32 bits are an IPv4 address that the packets end up at (or at a
# gateway the IPv4 address names): IPv4-compatible (deprecated) and NAT64's well-known prefix.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks of a comma-separated list of CIDRs ("192.168.1.0/24, fd00::/8")."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{ALLOW_ENV}: {item!r} is not a network; give CIDRs such as 192.168.1.0/24 or fd00::/8"
            ) from None
    return tuple(networks)


def embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _IPV4_COMPATIBLE or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: Address) -> bool:
    """A unicast address on the public internet: not loopback, link-local, private, shared
    (100.64.0.0/10), unique-local, site-local, multicast, reserved or unspecified."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public(inner)
    special = ip.is_multicast or ip.is_reserved or getattr(ip, "is_site_local", False)
    return ip.is_global and not special


def is_allowed(ip: Address, networks: tuple[Network, ...]) -> bool:
    """Public, or in one of `networks` (an IPv4-mapped address also by the IPv4 it maps)."""
    candidates = [ip] if getattr(ip, "ipv4_mapped", None) is None else [ip, ip.ipv4_mapped]
    return is_public(ip) or any(c in network for c in candidates for network in networks)
