"""
The echo service: RFC 862 echo and the socket tutorials' variants.

Embed any of these in a Twisted program::

    from twisted.internet import endpoints, reactor
    from tcplab.echo import EchoFactory
    endpoints.serverFromString(reactor, "tcp:0").listen(EchoFactory())

Laid out as every tcplab service: L{tcplab.echo.modes} (each reply mode,
defined once for TCP and UDP), L{tcplab.echo.stream} (the TCP protocols and
L{EchoFactory}) and L{tcplab.echo.datagram} (L{EchoDatagramProtocol} and the
L{DatagramPolicy} that keeps it from being looped or used as a reflector).
"""

from tcplab.echo.datagram import (
    DATAGRAM_BURST,
    DATAGRAM_RATE,
    MAX_DATAGRAM,
    MAX_SOURCES,
    DatagramPolicy,
    EchoDatagramProtocol,
)
from tcplab.echo.modes import (
    DEFAULT_ACK,
    DEFAULT_BANNER,
    EXIT_LINE,
    MODES,
    Counter,
    Mode,
    Reply,
    parseMode,
    replyFor,
)
from tcplab.echo.stream import (
    AckProtocol,
    CountingLineProtocol,
    CountingReadProtocol,
    EchoFactory,
    EchoProtocol,
    UpperEchoProtocol,
)

__all__ = [
    "DATAGRAM_BURST",
    "DATAGRAM_RATE",
    "DEFAULT_ACK",
    "DEFAULT_BANNER",
    "EXIT_LINE",
    "MAX_DATAGRAM",
    "MAX_SOURCES",
    "MODES",
    "AckProtocol",
    "Counter",
    "CountingLineProtocol",
    "CountingReadProtocol",
    "DatagramPolicy",
    "EchoDatagramProtocol",
    "EchoFactory",
    "EchoProtocol",
    "Mode",
    "Reply",
    "UpperEchoProtocol",
    "parseMode",
    "replyFor",
]
