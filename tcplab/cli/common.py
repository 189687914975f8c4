"""
Plumbing every ``tcplab`` subcommand shares: the common options (defined in
L{tcplab.cli.parsers}), connecting (TLS in L{tcplab.cli.tls}, imported only
when a connection uses it), tracing, passwords, and showing text from a
server safely.  L{runCommand} (from L{tcplab.cli.running}) runs a
subcommand and turns its expected failures into one line and an exit status.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol

from tcplab.addresses import clientEndpointDescription, splitHostPort
from tcplab.cli.parsers import PASSWORD_VARIABLE, addAuthOptions, addClientOptions
from tcplab.cli.running import ICommandReactor, interruptibleBlockingCall, runCommand
from tcplab.errors import ConnectError, ExitCode, TcplabError
from tcplab.hostport import HOST_PORT
from tcplab.observe import ConnectionObserver, ObservedProtocol

__all__ = [
    "addAuthOptions",
    "addClientOptions",
    "connect",
    "escapeControls",
    "forProtocol",
    "readPassword",
    "runCommand",
]


def readPassword(args: argparse.Namespace) -> str | None:
    """
    The password for C{--user}: from C{$TCPLAB_PASSWORD}, else asked for
    without echo on the terminal; L{None} without C{--user}.

    @raise TcplabError: C{--user} was given but no password can be had.
    """
    if not getattr(args, "user", None):
        return None
    password = os.environ.get(PASSWORD_VARIABLE)
    if password is not None:
        return password
    if not sys.stdin.isatty():
        raise TcplabError(
            f"--user {args.user} needs a password: set {PASSWORD_VARIABLE}", ExitCode.USAGE
        )
    import getpass  # only for a prompt: most commands never ask

    with interruptibleBlockingCall():
        return getpass.getpass(f"password for {args.user}: ")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escapeControls(text: str) -> str:
    """Show control characters as escapes, so text from a server cannot
    rewrite the user's terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def printToStderr(line: str) -> None:
    """Write one line to stderr right away (the trace sink of the client)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def isTLSFailure(failure: BaseException) -> bool:
    """
    Whether C{failure} is a TLS or certificate verification error.  Neither
    can happen before the TLS modules are loaded, so a plain TCP client never
    imports pyOpenSSL and C{cryptography} just to ask.
    """
    if "OpenSSL.SSL" not in sys.modules and "service_identity" not in sys.modules:
        return False
    from OpenSSL import SSL
    from service_identity import VerificationError

    return isinstance(failure, SSL.Error | VerificationError)


def describeConnectFailure(address: str, failure: BaseException) -> str:
    """A short human reason for a failed connection attempt."""
    if isinstance(failure, error.ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(failure, error.DNSLookupError):
        reason = "unknown host"
    elif isinstance(failure, error.TimeoutError | defer.TimeoutError | defer.CancelledError):
        reason = "timed out"
    elif isinstance(failure, error.NoRouteError):
        reason = "no route to host"
    elif isTLSFailure(failure):
        from tcplab.cli.tls import describeTLSError

        reason = f"TLS verification failed ({describeTLSError(failure)})"
    else:
        reason = " ".join(str(failure).split()) or type(failure).__name__
    return f"cannot connect to {address}: {reason}"


def clientEndpoint(reactor: ICommandReactor, args: argparse.Namespace) -> IStreamClientEndpoint:
    """
    The endpoint for C{args.address}: TCP for ``HOST:PORT``, TLS on top
    with C{--tls} or C{--cafile}, or any endpoint description as given.
    """
    tls = getattr(args, "tls", False) or getattr(args, "cafile", None)
    try:
        if not HOST_PORT.match(args.address):
            if tls and args.address.startswith("tcp:"):
                raise ValueError("--tls and --cafile take HOST:PORT")
            return clientFromString(reactor, clientEndpointDescription(args.address))
        host, port = splitHostPort(args.address)
        # Not through a tcp: description: its parser takes whole seconds only.
        endpoint = HostnameEndpoint(reactor, host, port, timeout=args.timeout)
        if not tls:
            return endpoint
        from tcplab.cli.tls import SniffingTLSEndpoint, tlsOptions

        return SniffingTLSEndpoint(tlsOptions(host, getattr(args, "cafile", None)), endpoint)
    except (ValueError, KeyError, TypeError) as e:
        raise TcplabError(f"bad address {args.address!r}: {e}", ExitCode.USAGE) from None


async def connect(
    reactor: ICommandReactor,
    args: argparse.Namespace,
    factory: IProtocolFactory,
    readSize: int | None = None,
    writeDirectly: bool = False,
) -> IProtocol:
    """
    Connect to C{args.address} with C{factory} and return the protocol.

    C{readSize} and C{writeDirectly} tune the connection's I/O as the
    services' settings do (L{tcplab.sending}): a bulk client such as
    C{tcplab get/put} reads 256 KiB at a time and sends at once.

    With C{--trace}, the protocol is wrapped so every chunk is printed on
    stderr; the wrapped (real) protocol is returned all the same.  Over TLS,
    this returns only once the handshake has succeeded, so a server that
    fails verification is reported here, as a connection failure.

    @raise ConnectError: the connection could not be made.
    """
    endpoint = clientEndpoint(reactor, args)
    tracing = args.trace or args.hexdump
    observer = ConnectionObserver(
        factory,
        "tcplab",
        traceSink=printToStderr if tracing else None,
        hexdump=args.hexdump,
        reactor=reactor,
        readSize=readSize,
        writeDirectly=writeDirectly,
    )
    attempt = endpoint.connect(observer)
    attempt.addTimeout(args.timeout, reactor)
    try:
        protocol = await attempt
    except Exception as e:
        raise ConnectError(describeConnectFailure(args.address, e)) from None
    assert isinstance(protocol, ObservedProtocol)  # what ConnectionObserver builds
    if isTLS(protocol):
        handshake = protocol.handshakeDone
        handshake.addTimeout(args.timeout, reactor)
        try:
            await handshake
        except Exception as e:
            first = getattr(protocol.transport, "firstBytes", None)
            reason = None
            if first is not None and not isinstance(e, defer.TimeoutError | defer.CancelledError):
                from tcplab.cli.tls import handshakeFailureReason

                reason = handshakeFailureReason(first)
            if reason is None:
                raise ConnectError(describeConnectFailure(args.address, e)) from None
            raise ConnectError(f"cannot connect to {args.address}: {reason}") from None
    return protocol.wrappedProtocol


def isTLS(protocol: ObservedProtocol) -> bool:
    """Whether the connection runs over TLS (its transport speaks ISSLTransport)."""
    return ISSLTransport.providedBy(protocol.transport)


class _SingleProtocolFactory(Factory):
    """A client factory that hands out protocols made by a callable."""

    def __init__(self, build: Callable[[], Protocol]) -> None:
        self.build = build

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """Make the protocol for this connection."""
        return self.build()


def forProtocol(build: Callable[[], Protocol]) -> Factory:
    """A factory building one client protocol with C{build}."""
    return _SingleProtocolFactory(build)
