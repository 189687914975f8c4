"""
The C{--metrics} HTTP endpoint: C{GET /metrics} and nothing else.

A scrape endpoint must never be the way to take down the service it
measures, so it is a deliberately small HTTP/1.1 responder rather than a web
server: it answers C{GET /metrics} with the registry's text and closes; any
other method gets C{405} as soon as the request line is read (a request body
is never read, let alone spooled to disk), any other path C{404}; the
request line and headers are bounded (L{MAX_REQUEST_BYTES}); a request must
be complete within L{REQUEST_TIMEOUT} seconds of connecting; and at most
L{MAX_SCRAPERS} connections are served at once, newcomers beyond that get
C{503} and are closed.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from tcplab.limits import RefusingProtocol
from tcplab.metrics import CONTENT_TYPE, Metrics
from tcplab.reactors import defaultReactor
from tcplab.transports import ConnectionTransport

MAX_SCRAPERS = 16
"""Connections to the metrics endpoint served at once."""

REQUEST_TIMEOUT = 10.0
"""Seconds a scraper has, from connecting, to finish its request headers."""

MAX_REQUEST_BYTES = 8192
"""The longest request line plus headers accepted."""

LINGER = 2.0
"""Seconds a refused request gets to read its answer before the cut."""

METRICS_PATH = b"/metrics"


def httpResponse(
    status: str,
    body: bytes,
    contentType: bytes = b"text/plain; charset=utf-8",
    extra: dict[str, str] | None = None,
) -> bytes:
    """A complete C{HTTP/1.1} response that closes the connection."""
    headers = [
        f"HTTP/1.1 {status}".encode(),
        b"Content-Type: " + contentType,
        f"Content-Length: {len(body)}".encode(),
        b"Connection: close",
        *(f"{name}: {value}".encode() for name, value in (extra or {}).items()),
    ]
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


class MetricsHTTPProtocol(Protocol):
    """Answer one HTTP request on one connection, then close."""

    transport: ConnectionTransport  # type: ignore[assignment]

    factory: MetricsHTTPFactory

    def __init__(self) -> None:
        self.received = b""
        self.answered = False
        self.deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        """Start the clock: the whole request must arrive in time."""
        self.factory.open += 1
        self.deadline = self.factory.reactor.callLater(REQUEST_TIMEOUT, self.timedOut)

    def dataReceived(self, data: bytes) -> None:
        """Decide as early as the request allows; never read a body."""
        if self.answered:
            return
        self.received += data
        lineEnd = self.received.find(b"\n")
        if lineEnd < 0:
            if len(self.received) > MAX_REQUEST_BYTES:
                self.refuse("414 URI Too Long", b"request line too long\n")
            return
        parts = self.received[:lineEnd].rstrip(b"\r").split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self.refuse("400 Bad Request", b"not an HTTP/1.x request\n")
        elif parts[0] != b"GET":
            self.refuse("405 Method Not Allowed", b"only GET is served\n", {"Allow": "GET"})
        elif parts[1].split(b"?", 1)[0] != METRICS_PATH:
            self.refuse("404 Not Found", b"metrics are at /metrics\n")
        elif b"\r\n\r\n" in self.received or b"\n\n" in self.received:
            self.answer(httpResponse("200 OK", self.factory.metrics.render(), CONTENT_TYPE))
        elif len(self.received) > MAX_REQUEST_BYTES:
            self.refuse("431 Request Header Fields Too Large", b"headers too large\n")

    def answer(self, response: bytes) -> None:
        """Send the response and close."""
        self.answered = True
        self.received = b""
        assert self.transport is not None
        self.transport.write(response)
        self.transport.loseConnection()

    def refuse(self, status: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """
        Send an error response without reading any more: stop reading, shut
        our sending side once it is out, and cut the connection a little
        later (closing a socket with unread input would reset it, and the
        client might never see why).
        """
        self.answered = True
        self.received = b""
        transport = self.transport
        transport.write(httpResponse(status, body, extra=headers))
        transport.pauseProducing()
        transport.loseWriteConnection()
        if self.deadline is not None and self.deadline.active():
            self.deadline.reset(LINGER)

    def timedOut(self) -> None:
        """The request took too long (or a refused client lingered): cut it."""
        self.deadline = None
        transport = self.transport
        if not self.answered:
            self.answered = True
            transport.write(httpResponse("408 Request Timeout", b"request too slow\n"))
        transport.abortConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Free the slot."""
        self.factory.open -= 1
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.deadline = None


class MetricsHTTPFactory(Factory):
    """
    Serve a L{Metrics} registry over HTTP to at most C{maxConnections} at once.

    @ivar open: connections being served now.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        metrics: Metrics,
        reactor: IReactorTime | None = None,
        maxConnections: int = MAX_SCRAPERS,
    ) -> None:
        self.metrics = metrics
        self.reactor = defaultReactor(reactor)
        self.maxConnections = maxConnections
        self.open = 0

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """A scrape handler, or a C{503} when too many are open."""
        if self.open >= self.maxConnections:
            self.log.warn("metrics: refused a scraper, {count} connections open", count=self.open)
            return RefusingProtocol(
                httpResponse("503 Service Unavailable", b"too many metrics connections\n")
            )
        protocol = MetricsHTTPProtocol()
        protocol.factory = self
        return protocol


def metricsFactory(metrics: Metrics, reactor: IReactorTime | None = None) -> MetricsHTTPFactory:
    """The factory serving C{metrics} at C{GET /metrics}."""
    return MetricsHTTPFactory(metrics, reactor)
