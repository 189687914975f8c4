"""
The HTTP side every tcplab page shares: a channel the service plumbing can
time out, requests that never buffer an unbounded body, and a site that
refuses in HTTP.

L{WebChannel} tells the slow-drip sweeper (L{IMessageProgress}) when a
request's headers, or a WebSocket message, are half-received, so a peer
dribbling them a byte at a time is cut after C{--message-timeout}; the
idle timeout is the service's, not twisted.web's.  After a WebSocket
upgrade it bounds the size of one message.  L{WebRequest} gives every
response the security headers and hands a request body either to a sink
the site provides (uploads, streamed to disk) or, up to L{MAX_BODY} bytes,
to memory; a larger body is refused before it is read.
"""

from __future__ import annotations

import json
from typing import Protocol, cast

from twisted.internet.interfaces import IProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import IResource
from zope.interface import implementer

from tcplab.interfaces import IGracefulStop, IMessageProgress, IRefusalFormat
from tcplab.transports import ConnectionTransport
from tcplab.web.security import SessionStore, setSecurityHeaders

MAX_BODY = 64 * 1024
"""The largest request body held in memory (logins, forms): uploads stream."""

MAX_WEBSOCKET_MESSAGE = 64 * 1024
"""The largest WebSocket message a peer may send (a chat line is far less)."""


class BodySink(Protocol):
    """Where a streamed request body goes (an upload)."""

    def chunk(self, data: bytes) -> None:
        """A piece of the body, in order."""

    def lost(self, reason: Failure) -> None:
        """The connection went before the body was complete."""


class Refused(Exception):
    """A request refused before its body is read: status and one-line reason."""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def jsonBody(status: int, document: object) -> bytes:
    """A complete HTTP/1.1 response with a JSON body, closing the connection."""
    body = json.dumps(document).encode("utf-8")
    reason = http.RESPONSES.get(status, b"Error")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\nx-content-type-options: nosniff\r\n\r\n%s"
        % (status, reason, len(body), body)
    )


class WebRequest(server.Request):
    """
    A request with tcplab's headers, whose body streams into the site's sink
    or, bounded by L{MAX_BODY}, into memory.

    @ivar sink: the body's destination when the site streams it.
    @ivar refused: the body is being thrown away: the request was refused.
    """

    sink: BodySink | None = None
    refused = False
    bodySize = 0
    """Bytes of a body kept in memory so far (chunked bodies have no length up front)."""

    def gotLength(self, length: int | None) -> None:
        """Choose where the body goes, or refuse the request before reading it."""
        site: WebSite = self.channel.site  # type: ignore[attr-defined]
        command = getattr(self.channel, "_command", b"")
        path = getattr(self.channel, "_path", b"")
        try:
            self.sink = site.bodySink(self, command, path, length)
            if self.sink is None and length is not None and length > MAX_BODY:
                raise Refused(http.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY} bytes")
        except Refused as e:
            self.refuse(e.status, e.message, **e.extra)
        super().gotLength(0 if self.sink is not None or self.refused else length)

    def refuse(self, status: int, message: str, **extra: object) -> None:
        """Answer now, before the body, and close: nothing more is read."""
        self.refused = True
        transport = cast(ConnectionTransport, self.channel.transport)
        transport.write(jsonBody(status, {"ok": False, "error": message, **extra}))
        transport.loseConnection()

    def handleContentChunk(self, data: bytes) -> None:
        """Stream the chunk to the sink, or keep it (bounded), or drop it when refused."""
        if self.refused:
            return
        if self.sink is not None:
            self.sink.chunk(data)
            return
        self.bodySize += len(data)
        if self.bodySize > MAX_BODY:
            self.refuse(http.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY} bytes")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """A refused request was answered already; the others are processed."""
        if self.refused:
            return
        super().requestReceived(command, path, version)

    def process(self) -> None:
        """Every response carries the security headers."""
        setSecurityHeaders(self)
        super().process()

    def connectionLost(self, reason: Failure) -> None:
        """Tell a sink still waiting for its body that it will not come."""
        sink, self.sink = self.sink, None
        if sink is not None and not self.finished:
            sink.lost(reason)
        super().connectionLost(reason)


@implementer(IMessageProgress, IGracefulStop)
class WebChannel(http.HTTPChannel):
    """
    An HTTP channel whose half-received headers (and, after an upgrade,
    WebSocket messages) the slow-drip sweeper sees, and which winds down
    with the service.
    """

    log = Logger()
    requestsStarted = 0
    messagesDone = 0
    upgraded: IProtocol | None = None
    """The WebSocket wire protocol, once the channel was upgraded."""

    def messageInProgress(self) -> object | None:
        """A marker while headers or a WebSocket message are half-received."""
        if self.upgraded is not None:
            textBuffer = getattr(self.upgraded, "_textBuffer", None)
            bytesBuffer = getattr(self.upgraded, "_bytesBuffer", None)
            partial = bool(textBuffer and textBuffer.data) or bool(
                bytesBuffer and bytesBuffer.data
            )
            return ("message", self.messagesDone) if partial else None
        if not self.line_mode or self._handlingRequest:
            return None  # a body streams (idle timeout), or a response is under way
        if getattr(self, "_HTTPChannel__first_line", 1) == 1 and not self._buffer:
            return None  # between requests
        return ("headers", self.requestsStarted)

    def allHeadersReceived(self) -> None:
        """The headers are complete: the slow-drip marker moves on."""
        self.requestsStarted += 1
        super().allHeadersReceived()

    def _protocolUpgradeForWebsockets(self, protocol: IProtocol) -> None:
        """Hand the connection to a WebSocket, with a bound on one message."""
        # The channel is the transport's producer; the WebSocket side
        # registers its own (the chat member's slow-consumer detection).
        transport = cast(ConnectionTransport, self.transport)
        transport.unregisterProducer()
        self.upgraded = protocol
        receive = protocol.dataReceived

        def dataReceived(data: bytes) -> None:
            receive(data)
            for name in ("_textBuffer", "_bytesBuffer"):
                buffer = getattr(protocol, name, None)
                if buffer is not None and len(buffer.data) > MAX_WEBSOCKET_MESSAGE:
                    self.log.warn(
                        "{peer}: WebSocket message over {limit} bytes, disconnecting",
                        peer=transport.getPeer(),
                        limit=MAX_WEBSOCKET_MESSAGE,
                    )
                    buffer.data = buffer.data[:0]
                    transport.abortConnection()
                    return

        protocol.dataReceived = dataReceived  # type: ignore[method-assign]
        super()._protocolUpgradeForWebsockets(protocol)

    def webSocketMessageDone(self) -> None:
        """A whole WebSocket message arrived (the slow-drip marker moves on)."""
        self.messagesDone += 1

    def serverStopping(self) -> None:
        """Shutting down: a WebSocket member says goodbye; HTTP closes when done."""
        member = getattr(self.upgraded, "_wsp", None)
        if member is not None and IGracefulStop.providedBy(member):
            member.serverStopping()
            return
        if not self._handlingRequest:
            self.loseConnection()
        else:
            self.persistent = False


@implementer(IRefusalFormat)
class WebSite(server.Site):
    """
    A twisted.web site for tcplab pages: L{WebChannel}s making
    L{WebRequest}s, without twisted.web's own 12-hour idle timer (the
    service's idle timeout applies) and with its sessions.

    @ivar store: the browsers' sessions (twisted.web's own C{sessions} are unused).
    """

    protocol = WebChannel  # type: ignore[assignment]
    requestFactory = WebRequest
    noisy = False

    def __init__(self, resource: IResource, sessions: SessionStore | None = None) -> None:
        super().__init__(resource, timeout=None)
        self.store = sessions if sessions is not None else SessionStore()
        self.displayTracebacks = False

    def bodySink(
        self, request: WebRequest, command: bytes, path: bytes, length: int | None
    ) -> BodySink | None:
        """
        Where this request's body should stream (None: into memory).

        @raise Refused: the request is refused before its body is read.
        """
        return None

    @staticmethod
    def refusal(reason: str) -> bytes:
        """A peer refused by a connection limit gets an HTTP 503 saying why."""
        return jsonBody(http.SERVICE_UNAVAILABLE, {"ok": False, "error": reason})

    def log(self, request: http.Request) -> None:
        """Requests are not logged one by one (the connection log says who came)."""
