"""
Addresses as users type them and as logs show them.

The client accepts ``HOST:PORT`` (``[::1]:8007`` for IPv6) as a shorthand, or
any Twisted client endpoint description (``tcp:host=...:port=...``,
``tls:...``, ``unix:path=...``).
"""

from __future__ import annotations

import ipaddress
import re

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from tcplab.hostport import HOST_PORT

DEFAULT_BACKLOG = 1024
"""The listen backlog tcplab asks for unless a description sets one.

Twisted's own default is 50: a burst of a few hundred clients connecting at
once (a chat room reconnecting after a restart) overflows it, and the kernel
then silently drops handshakes that the clients believe complete."""

_BACKLOG_ENDPOINTS = frozenset({"tcp", "tcp6", "ssl", "unix"})
_HAS_BACKLOG = re.compile(r"(?:^|(?<!\\):)backlog=")

_HOST_PORT = HOST_PORT


def describeAddress(address: object) -> str:
    """Render a Twisted address as ``host:port``, ``[v6]:port`` or ``unix:path``."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        if not name:
            return "unix:(anonymous)"
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        return f"unix:{text}"
    return str(address)


def canonicalHost(host: str) -> str:
    """
    One spelling per IP host: an IPv4-mapped IPv6 address (C{::ffff:a.b.c.d},
    what a C{tcp6} listener sees of an IPv4 client) becomes C{a.b.c.d}, and
    IPv6 addresses are compressed and lower-cased.  Anything that is not an
    IP address is returned unchanged.
    """
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


_DESCRIBED_IP = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):\d+$")


def peerHost(address: object) -> str | None:
    """
    The host a peer connects from, as per-host limits and login backoff key
    it: the IP address (IPv4-mapped IPv6 folded into IPv4), or L{None} for a
    UNIX socket, which has no host (every local client would look alike).

    C{address} is a Twisted address, or one rendered by L{describeAddress}
    (C{host:port}, C{[v6]:port}, C{unix:...}).
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return canonicalHost(address.host)
    if isinstance(address, UNIXAddress):
        return None
    text = str(address)
    if text.startswith("unix:"):
        return None
    match = _DESCRIBED_IP.match(text)
    if match:
        return canonicalHost(match.group("v6") or match.group("host"))
    return canonicalHost(text)


def withBacklog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """
    C{description}, a server endpoint description, with C{backlog=BACKLOG}
    added when its endpoint type takes one and it does not set its own.
    """
    kind = description.split(":", 1)[0].lower()
    if kind not in _BACKLOG_ENDPOINTS or _HAS_BACKLOG.search(description):
        return description
    return f"{description}:backlog={backlog}"


def splitHostPort(address: str) -> tuple[str, int]:
    """
    Split ``HOST:PORT`` or ``[V6]:PORT``.

    @raise ValueError: C{address} is not of that form.
    """
    match = _HOST_PORT.match(address)
    if not match:
        raise ValueError(f"{address!r} is not HOST:PORT")
    port = int(match.group("port"))
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {address!r}")
    return match.group("v6") or match.group("host"), port


def clientEndpointDescription(address: str) -> str:
    """
    Turn what the user typed into a Twisted client endpoint description.

    ``HOST:PORT`` becomes a C{tcp:} description (resolved by hostname, so
    IPv4 and IPv6 both work); anything else must already be a description
    and is returned unchanged.

    @raise ValueError: C{address} is neither.
    """
    if _HOST_PORT.match(address):
        host, port = splitHostPort(address)
        # endpoints loads pyOpenSSL: imported when needed, not with this module
        from twisted.internet.endpoints import quoteStringArgument

        return f"tcp:host={quoteStringArgument(host)}:port={port}"
    if ":" not in address:
        raise ValueError(
            f"{address!r} is not HOST:PORT or an endpoint description like tcp:host=H:port=P"
        )
    return address
