"""
The start-up announcement of a web listener: its URL(s), and a QR code in
the terminal so a phone can open the page by pointing its camera at it.

Only a listener reachable from elsewhere is announced with a QR code: one on
loopback can only be opened from this machine.  A wildcard address
(C{0.0.0.0}, C{::}) is shown as this machine's own addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import IO

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress


def isLoopback(host: str) -> bool:
    """Whether C{host} is a loopback address."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def localAddresses(family: int = socket.AF_INET) -> list[str]:
    """
    This machine's non-loopback addresses that others can reach it by: the
    address of the default route first (found without sending a packet),
    then those its host name resolves to.
    """
    found: list[str] = []
    probe = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            found.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM):
            found.append(str(info[4][0]))
    except OSError:
        pass
    unique: list[str] = []
    for address in found:
        if address not in unique and not isLoopback(address) and not address.startswith("fe80"):
            unique.append(address)
    return unique


def urlsFor(address: IAddress, secure: bool) -> list[str]:
    """
    The URLs by which others reach a listener bound to C{address}; empty for
    loopback or a UNIX socket.
    """
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return []
    scheme = "https" if secure else "http"
    host = address.host
    if isLoopback(host):
        return []
    if host in ("0.0.0.0", "::"):
        hosts = localAddresses(socket.AF_INET)
        if host == "::":
            hosts += localAddresses(socket.AF_INET6)
    else:
        hosts = [host]
    return [
        f"{scheme}://[{h}]:{address.port}/" if ":" in h else f"{scheme}://{h}:{address.port}/"
        for h in hosts
    ]


def qrText(url: str) -> str:
    """C{url} as a QR code drawn with block characters, for a terminal."""
    import io

    import segno

    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


def announce(label: str, urls: list[str], out: IO[str]) -> None:
    """Print the URLs and a QR code of the first, for a phone to scan."""
    if not urls:
        return
    lines = [f"{label}: open {url} in a browser" for url in urls]
    lines.append(f"{label}: or scan this with a phone to open {urls[0]}:")
    out.write("\n".join(lines) + "\n" + qrText(urls[0]) + "\n")
    out.flush()
