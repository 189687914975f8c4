"""
A process that cannot use TLS runs without loading pyOpenSSL.

Twisted imports pyOpenSSL, and through it C{cryptography}, as soon as its TCP
transport, reactor or endpoints are imported, if it is installed: about
13 MiB of memory and a third of a second of start-up on our VM, in every
``tcplab echo HOST:PORT`` and every ``twistd -n tcplab-echo``.  Twisted also
runs without pyOpenSSL (TLS is its C{tls} extra), so once a command's or a
service's options are parsed, and before Twisted's networking is first
imported, a process whose every address is plain (TCP, UDP or a UNIX socket)
and which has no TLS option tells Python pyOpenSSL is absent; Twisted then
takes its own no-TLS path.  Anything else (C{tls:}, C{ssl:}, an endpoint
plugin's description, an option named for TLS or certificates) loads Twisted
as usual: when in doubt, TLS stays in.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping

from tcplab.hostport import HOST_PORT

PLAIN_ENDPOINTS = frozenset({"tcp", "tcp6", "udp", "unix"})
"""Endpoint types that never speak TLS."""

TLS_WORDS = re.compile(r"tls|ssl|cert|key|ca(?:file|path)?$", re.IGNORECASE)
"""Option names that suggest TLS: such an option, when set, keeps pyOpenSSL in."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")

LOADED_TOO_SOON = ("OpenSSL", "twisted.internet.tcp", "twisted.internet.endpoints")
"""Modules whose presence means it is too late (or pointless) to leave pyOpenSSL out."""


def isPlainEndpoint(text: str) -> bool:
    """Whether C{text} is an endpoint description that can only be plain: tcp:, udp:, unix:."""
    scheme = _SCHEME.match(text)
    return scheme is not None and scheme.group(1).lower() in PLAIN_ENDPOINTS


def cannotUseTLS(args: argparse.Namespace) -> bool:
    """Whether a client command's connection is certainly plain TCP or a UNIX socket."""
    if getattr(args, "tls", False) or getattr(args, "cafile", None):
        return False
    address = str(getattr(args, "address", ""))
    # The client reads HOST:PORT as plain TCP, whatever the host is called.
    return bool(HOST_PORT.match(address)) or isPlainEndpoint(address)


def _strings(value: object) -> Iterable[str]:
    """The strings in an option value (one, or inside a list or tuple)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def serviceCannotUseTLS(options: Mapping[str, object]) -> bool:
    """
    Whether a service with these parsed options certainly needs no TLS:
    no option named for TLS is set, and every value with a colon in it (an
    endpoint description, a URL, a HOST:PORT for some other service) is a
    plain endpoint description.  Anything unrecognised keeps TLS in.
    """
    for name, value in options.items():
        if value and TLS_WORDS.search(name):
            return False
        for text in _strings(value):
            if ":" in text and not isPlainEndpoint(text):
                return False
    return True


def leaveOutTLS(cannotUse: bool, digests: bool = True) -> bool:
    """
    Keep OpenSSL out of this process when it C{cannotUse} TLS and Twisted's
    networking has not been loaded yet (it has when the command or service
    runs inside a larger program, such as the tests, or when twistd installed
    a reactor for C{--reactor}); return whether it was left out.

    Left out are pyOpenSSL (Twisted's TLS) and the standard library's C{_ssl}
    (asyncio and C{urllib} import C{ssl} if it is there, and do without).
    Unless the process needs C{digests} (SHA-256 of whole files), C{hashlib}'s
    OpenSSL backend C{_hashlib} goes too: C{hashlib} then falls back to
    Python's built-in digests, slower on bulk data but the same results.
    Without all three, C{libcrypto} is never mapped: 4.5 MiB and about 10 ms
    less for C{tcplab echo} (bench/RESULTS.md).
    """
    if not cannotUse or any(name in sys.modules for name in LOADED_TOO_SOON):
        return False
    absent = ["OpenSSL"]
    if "ssl" not in sys.modules:
        absent.append("_ssl")
    if not digests and "hashlib" not in sys.modules:
        absent.append("_hashlib")
    for name in absent:
        sys.modules[name] = None  # type: ignore[assignment]  # import NAME: ImportError
    return True
