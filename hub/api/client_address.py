"""The address a request came from, believing ``X-Forwarded-For`` only from our own proxies.

The per-address login limit is only as good as the address. Any client can send an
``X-Forwarded-For`` header, so the hub believes it only when the TCP peer is one of the
proxies named in ``api.trusted_proxies`` (default: none; uvicorn's own header handling is
switched off in ``hub.__main__``, it trusted 127.0.0.1 without being asked). Behind such a
proxy the header is read from the right: each trusted proxy appends the address it saw, so
the right-most address that is not one of ours is the client; anything to its left was
written by the client itself and proves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.requests import HTTPConnection

Network = IPv4Network | IPv6Network
FORWARDED_FOR = "x-forwarded-for"


def _parsed(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def forwarded_client(peer: str, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client's address from the TCP ``peer`` and the header, trusting only ``proxies``."""
    if not forwarded_for or not _trusted(_parsed(peer), proxies):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _parsed(hop)
        if address is None:
            break  # garbage from the client: stop at the last hop a proxy vouched for
        client = str(address)
        if not _trusted(address, proxies):
            break
    return client


def client_address(connection: HTTPConnection, proxies: Sequence[Network]) -> str:
    peer = connection.client.host if connection.client is not None else "unknown"
    return forwarded_client(peer, connection.headers.get(FORWARDED_FOR), proxies)
