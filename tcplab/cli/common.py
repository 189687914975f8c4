"""
Plumbing every ``tcplab`` subcommand shares: connecting, tracing, and
turning expected failures into one line and an exit status.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

from tcplab.addresses import clientEndpointDescription, splitHostPort
from tcplab.errors import ConnectError, ExitCode, TcplabError
from tcplab.observe import ConnectionObserver, ObservedProtocol

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a connection to be established."""


def addClientOptions(parser: argparse.ArgumentParser) -> None:
    """Add ADDRESS and the options every client command takes."""
    parser.add_argument("address", metavar="ADDRESS", help="HOST:PORT or an endpoint description")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up connecting after this long (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print every chunk read or written (size, direction, time) on stderr",
    )
    parser.add_argument(
        "--hexdump", action="store_true", help="with --trace, also dump each chunk in hex"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="connect to HOST:PORT with TLS, verifying the server against the system's CAs",
    )
    parser.add_argument(
        "--cafile",
        metavar="PEM",
        help="connect to HOST:PORT with TLS, verifying the server against this CA "
        "certificate (a self-signed server certificate works too)",
    )


PASSWORD_VARIABLE = "TCPLAB_PASSWORD"
"""The environment variable the client reads a password from."""


def addAuthOptions(parser: argparse.ArgumentParser) -> None:
    """Add C{--user} (the password comes from the environment or a prompt)."""
    parser.add_argument(
        "--user",
        metavar="NAME",
        help=f"log in as NAME; the password is read from ${PASSWORD_VARIABLE}, "
        "or asked for on the terminal (never taken on the command line)",
    )


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


def describeTLSError(failure: BaseException) -> str:
    """The reason inside an OpenSSL error, e.g. ``certificate verify failed``."""
    reasons = []
    for arg in getattr(failure, "args", ()):
        if isinstance(arg, list):
            reasons += [entry[-1] for entry in arg if isinstance(entry, tuple) and entry]
    return ", ".join(str(r) for r in reasons) or " ".join(str(failure).split())


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
    elif isinstance(failure, SSL.Error | VerificationError):
        reason = f"TLS verification failed ({describeTLSError(failure)})"
    else:
        reason = " ".join(str(failure).split()) or type(failure).__name__
    return f"cannot connect to {address}: {reason}"


TLS_RECORD_TYPES = frozenset({0x14, 0x15, 0x16, 0x17})
"""The first byte of a TLS record: change_cipher_spec, alert, handshake, data."""

TLS_HANDSHAKE = 0x16
CLIENT_HELLO = 0x01


def looksLikeTLSFromServer(first: bytes) -> bool:
    """
    Whether the first bytes a server sent could start a TLS server's reply.

    A TLS record starts with its type and major version 3; a server's first
    handshake message is never a ClientHello -- that is an echo server
    sending our own hello back.
    """
    if len(first) < 2 or first[0] not in TLS_RECORD_TYPES or first[1] != 3:
        return False
    return not (first[0] == TLS_HANDSHAKE and first[5:6] == bytes([CLIENT_HELLO]))


def describeHandshakeFailure(address: str, first: bytes, failure: BaseException) -> str:
    """
    Why a TLS handshake failed, from the first bytes the server sent: a
    plain-TCP port says so rather than as an OpenSSL parsing error.
    """
    if not first:
        return (
            f"cannot connect to {address}: the server closed the connection "
            "during the TLS handshake"
        )
    if not looksLikeTLSFromServer(first):
        return (
            f"cannot connect to {address}: the server did not speak TLS (is it a plain TCP port?)"
        )
    return describeConnectFailure(address, failure)


class SniffingTLSTransport(BufferingTLSTransport):
    """A client TLS protocol that remembers the first bytes the server sent."""

    SNIFF_SIZE = 6

    firstBytes = b""

    def dataReceived(self, data: bytes) -> None:
        """Keep the start of the server's stream, then decrypt as usual."""
        if len(self.firstBytes) < self.SNIFF_SIZE:
            self.firstBytes += data[: self.SNIFF_SIZE - len(self.firstBytes)]
        super().dataReceived(data)


class SniffingTLSFactory(TLSMemoryBIOFactory):
    """L{TLSMemoryBIOFactory} building L{SniffingTLSTransport}s."""

    protocol = SniffingTLSTransport


def unwrapProtocol(protocol: Any) -> Any:
    """The protocol inside a wrapper (the TLS layer)."""
    return protocol.wrappedProtocol


@implementer(IStreamClientEndpoint)
class SniffingTLSEndpoint:
    """
    TLS over another client endpoint, as L{wrapClientTLS} does, keeping the
    first bytes the server sent so a failed handshake can say why.
    """

    def __init__(self, options: Any, wrapped: IStreamClientEndpoint) -> None:
        self.options = options
        self.wrapped = wrapped

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        """Connect, start TLS, and return C{protocolFactory}'s protocol."""
        tls = SniffingTLSFactory(self.options, True, protocolFactory)
        attempt: defer.Deferred[Any] = self.wrapped.connect(tls)
        return attempt.addCallback(unwrapProtocol)


def clientEndpoint(reactor: Any, args: argparse.Namespace) -> Any:
    """
    The endpoint for C{args.address}: TCP for ``HOST:PORT``, TLS on top
    with C{--tls} or C{--cafile}, or any endpoint description as given.
    """
    try:
        description = clientEndpointDescription(args.address, args.timeout)
        tls = getattr(args, "tls", False) or getattr(args, "cafile", None)
        if not tls or not description.startswith("tcp:"):
            return clientFromString(reactor, description)
        host, port = splitHostPort(args.address)
        return SniffingTLSEndpoint(
            tlsOptions(host, getattr(args, "cafile", None)),
            HostnameEndpoint(reactor, host, port, timeout=args.timeout),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise TcplabError(f"bad address {args.address!r}: {e}", ExitCode.USAGE) from None


def tlsOptions(host: str, cafile: str | None) -> Any:
    """TLS client options verifying C{host} against C{cafile} or the system CAs."""
    if cafile is None:
        return optionsForClientTLS(host)
    try:
        with open(cafile, "rb") as pem:
            trustRoot = Certificate.loadPEM(pem.read())
    except (OSError, ValueError) as e:
        raise TcplabError(f"cannot read --cafile {cafile}: {e}", ExitCode.USAGE) from None
    except Exception as e:  # OpenSSL's own errors for a file that is not a certificate
        raise TcplabError(
            f"--cafile {cafile} is not a PEM certificate ({e})", ExitCode.USAGE
        ) from None
    return optionsForClientTLS(host, trustRoot=trustRoot)


async def connect(
    reactor: Any,
    args: argparse.Namespace,
    factory: IProtocolFactory,
) -> IProtocol:
    """
    Connect to C{args.address} with C{factory} and return the protocol.

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
    )
    attempt = endpoint.connect(observer)
    attempt.addTimeout(args.timeout, reactor)
    try:
        protocol = await attempt
    except Exception as e:
        raise ConnectError(describeConnectFailure(args.address, e)) from None
    if isTLS(protocol):
        handshake = protocol.handshakeDone
        handshake.addTimeout(args.timeout, reactor)
        try:
            await handshake
        except Exception as e:
            first = getattr(protocol.transport, "firstBytes", None)
            if first is None or isinstance(e, defer.TimeoutError | defer.CancelledError):
                raise ConnectError(describeConnectFailure(args.address, e)) from None
            raise ConnectError(describeHandshakeFailure(args.address, first, e)) from None
    return protocol.wrappedProtocol


def isTLS(protocol: ObservedProtocol) -> bool:
    """Whether the connection runs over TLS (its transport speaks ISSLTransport)."""
    return ISSLTransport.providedBy(protocol.transport)


class _SingleProtocolFactory(Factory):
    """A client factory that hands out protocols made by a callable."""

    def __init__(self, build: Callable[[], IProtocol]) -> None:
        self.build = build

    def buildProtocol(self, addr: Any) -> Any:
        """Make the protocol for this connection."""
        return self.build()


def forProtocol(build: Callable[[], IProtocol]) -> Factory:
    """A factory building one client protocol with C{build}."""
    return _SingleProtocolFactory(build)


INTERRUPT_GRACE = 2.0
"""Seconds a command has, after Ctrl-C, to put its affairs in order."""


class Interrupted(TcplabError):
    """The user pressed Ctrl-C (SIGINT)."""

    exitCode = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted")


_blockingCalls = [0]
"""How many blocking calls (a password prompt) Ctrl-C must break out of."""


@contextmanager
def interruptibleBlockingCall() -> Iterator[None]:
    """
    Around a call that blocks the reactor (a terminal prompt): Ctrl-C
    raises L{Interrupted} there, as the reactor cannot run the handler.
    """
    _blockingCalls[0] += 1
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        _blockingCalls[0] -= 1


class CommandRun:
    """
    One command's coroutine in the reactor, with Ctrl-C handling.

    Ctrl-C cancels the coroutine -- what it awaits fails with
    L{defer.CancelledError}, so its C{finally} blocks run: a download keeps
    its partial file, connections are closed -- and the command exits 130
    with one line, ``tcplab: interrupted``.  A command that has not
    finished L{INTERRUPT_GRACE} seconds later, or a second Ctrl-C, stops the
    reactor at once.

    @ivar status: the exit status once the reactor has stopped.
    """

    def __init__(self, reactor: Any, main: Callable[[Any], Awaitable[int]]) -> None:
        self.reactor = reactor
        self.main = main
        self.status = int(ExitCode.FAILURE)
        self.interrupted = False
        self.running: defer.Deferred[None] | None = None

    async def guarded(self) -> None:
        """Run the command; turn its expected failures into a line and a status."""
        try:
            self.status = await self.main(self.reactor)
        except Interrupted:
            self.interrupted = True
        except TcplabError as e:
            if not self.interrupted:
                print(f"tcplab: {e.message}", file=sys.stderr)
                self.status = e.exitCode
        except Exception:
            if not self.interrupted:
                traceback.print_exc()
                self.status = ExitCode.FAILURE
        finally:
            self.stopReactor()

    def start(self) -> None:
        """Start the command (the reactor is running)."""
        if not self.interrupted:
            self.running = defer.ensureDeferred(self.guarded())

    def interrupt(self) -> None:
        """Ctrl-C: cancel the command, then stop in any case after the grace period."""
        if self.interrupted or self.running is None:
            self.interrupted = True
            self.stopReactor()
            return
        self.interrupted = True
        self.reactor.callLater(INTERRUPT_GRACE, self.stopReactor)
        self.running.cancel()

    def onSignal(self, signum: int, frame: Any) -> None:
        """The SIGINT handler: hand over to the reactor, or break out of a prompt."""
        self.reactor.callFromThread(self.interrupt)
        if _blockingCalls[0]:
            raise KeyboardInterrupt

    def stopReactor(self) -> None:
        """Stop the reactor unless it is already stopping."""
        with suppress(error.ReactorNotRunning):
            self.reactor.stop()

    def run(self) -> int:
        """Run the reactor until the command is done; return the exit status."""
        previous = signal.signal(signal.SIGINT, self.onSignal)
        try:
            self.reactor.callWhenRunning(self.start)
            self.reactor.run()
        finally:
            signal.signal(signal.SIGINT, previous)
        if self.interrupted:
            print(f"tcplab: {Interrupted().message}", file=sys.stderr)
            return int(ExitCode.INTERRUPTED)
        return self.status


def runCommand(main: Callable[[Any], Awaitable[int]]) -> int:
    """
    Run C{main(reactor)} in the reactor and return the exit status.

    A L{TcplabError} becomes one line on stderr (``tcplab: ...``) and its
    exit code; Ctrl-C gives ``tcplab: interrupted`` and 130 (see
    L{CommandRun}); anything else is a bug and shows its traceback.
    """
    from twisted.internet import reactor

    return CommandRun(reactor, main).run()
