"""
Plumbing every ``tcplab`` subcommand shares: connecting, tracing, and
turning expected failures into one line and an exit status.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer, error
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.protocol import Factory

from tcplab.addresses import clientEndpointDescription
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


def printToStderr(line: str) -> None:
    """Write one line to stderr right away (the trace sink of the client)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


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
    else:
        reason = " ".join(str(failure).split()) or type(failure).__name__
    return f"cannot connect to {address}: {reason}"


async def connect(
    reactor: Any,
    args: argparse.Namespace,
    factory: IProtocolFactory,
) -> IProtocol:
    """
    Connect to C{args.address} with C{factory} and return the protocol.

    With C{--trace}, the protocol is wrapped so every chunk is printed on
    stderr; the wrapped (real) protocol is returned all the same.

    @raise ConnectError: the connection could not be made.
    """
    try:
        description = clientEndpointDescription(args.address, args.timeout)
        endpoint = clientFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise TcplabError(f"bad address {args.address!r}: {e}", ExitCode.USAGE) from None
    if args.trace or args.hexdump:
        factory = ConnectionObserver(
            factory,
            "tcplab",
            traceSink=printToStderr,
            hexdump=args.hexdump,
        )
    attempt = endpoint.connect(factory)
    attempt.addTimeout(args.timeout, reactor)
    try:
        protocol = await attempt
    except Exception as e:
        raise ConnectError(describeConnectFailure(args.address, e)) from None
    if isinstance(protocol, ObservedProtocol):
        return protocol.wrappedProtocol
    return protocol


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


def runCommand(main: Callable[[Any], Awaitable[int]]) -> int:
    """
    Run C{main(reactor)} in the reactor and return the exit status.

    A L{TcplabError} becomes one line on stderr (``tcplab: ...``) and its
    exit code; Ctrl-C (the reactor stopping before C{main} is done) gives
    130; anything else is a bug and shows its traceback.
    """
    from twisted.internet import reactor

    status = [int(ExitCode.INTERRUPTED)]

    async def guarded() -> None:
        try:
            status[0] = await main(reactor)
        except TcplabError as e:
            print(f"tcplab: {e.message}", file=sys.stderr)
            status[0] = e.exitCode
        except Exception:
            traceback.print_exc()
            status[0] = ExitCode.FAILURE
        finally:
            if reactor.running:
                reactor.stop()

    reactor.callWhenRunning(defer.ensureDeferred, guarded())
    reactor.run()
    return status[0]
