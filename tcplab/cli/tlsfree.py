"""
A client command that cannot use TLS runs without loading pyOpenSSL.

Twisted imports pyOpenSSL, and through it C{cryptography}, as soon as its
reactor or endpoints are imported, if it is installed: about 13 MiB and a
third of a second of start-up on our VM, for every ``tcplab echo
HOST:PORT``.  Twisted also runs without pyOpenSSL (TLS is its C{tls} extra),
so a command whose address is plain TCP or a UNIX socket, without
C{--tls}/C{--cafile}, tells Python pyOpenSSL is absent before Twisted is
first imported, and Twisted takes its no-TLS path.  Anything else (C{tls:},
C{ssl:}, an endpoint plugin's description) loads Twisted as usual.
"""

from __future__ import annotations

import argparse
import sys

from tcplab.hostport import HOST_PORT

PLAIN_ENDPOINTS = frozenset({"tcp", "tcp6", "unix"})
"""Endpoint types that never speak TLS."""


def cannotUseTLS(args: argparse.Namespace) -> bool:
    """Whether the command's connection is certainly plain TCP or a UNIX socket."""
    if getattr(args, "tls", False) or getattr(args, "cafile", None):
        return False
    address = str(getattr(args, "address", ""))
    if HOST_PORT.match(address):
        return True
    return address.split(":", 1)[0] in PLAIN_ENDPOINTS


def leaveOutTLS(args: argparse.Namespace) -> bool:
    """
    Keep pyOpenSSL out of this process when the command cannot use TLS and
    Twisted has not been loaded yet (it has when the command runs inside a
    larger program, such as the tests); return whether it was left out.
    """
    if not cannotUseTLS(args) or "twisted.internet" in sys.modules or "OpenSSL" in sys.modules:
        return False
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]  # import OpenSSL: ImportError
    return True
