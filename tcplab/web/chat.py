"""
The chat page's WebSocket: a browser as an ordinary member of the hub.

Each WebSocket gets a real L{ChatProtocol} from the service's own
L{ChatFactory}, connected to a L{LineFrames} transport: one text message in
is one line, each line out is one text message.  So a web user has exactly
what an C{nc} user has -- guest nickname, C{/commands}, history, flood
control, the line length limit, Unicode stripping, accounts, and the cut
when it stops reading -- and is seen by everyone else as one more member.
The handshake is refused (403) unless its C{Origin} is this very host and
port, so no other site can open a chat socket with a visitor's browser.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.websocket import WebSocketResource, WebSocketTransport
from zope.interface import implementer

from tcplab.chat.protocol import ChatFactory, ChatProtocol
from tcplab.interfaces import IGracefulStop
from tcplab.transports import ConnectionTransport
from tcplab.web.pages import InfoResource
from tcplab.web.security import sameOrigin


class LineFrames:
    """
    The transport a L{ChatProtocol} writes to, turning each CRLF-ended line
    it writes into one WebSocket text message.
    """

    def __init__(self, socket: WebSocketTransport, request: Request) -> None:
        self.socket = socket
        self.channel = request.channel
        self.peer = request.getClientAddress()
        self.host = request.getHost()
        self.closed = False

    def write(self, data: bytes) -> None:
        """Send each line of C{data} as one text message."""
        if self.closed:
            return
        lines = data.split(b"\r\n")
        if not lines[-1]:
            del lines[-1]  # the line end of the last line
        for line in lines:
            self.socket.sendTextMessage(line.decode("utf-8", "replace"))

    def writeSequence(self, chunks: list[bytes]) -> None:
        """Send several writes."""
        self.write(b"".join(chunks))

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """The member learns when the browser stops reading (slow-consumer cut)."""
        self.socket.attachProducer(producer)

    def unregisterProducer(self) -> None:
        """Stop telling the member."""
        if not self.closed:
            self.socket.detachProducer()

    def loseConnection(self) -> None:
        """Close the WebSocket once what was written is sent."""
        if not self.closed:
            self.closed = True
            self.socket.loseConnection()

    def abortConnection(self) -> None:
        """Drop the connection now (a client that stopped reading)."""
        self.closed = True
        transport = cast(ConnectionTransport, self.channel.transport)
        transport.abortConnection()

    def getPeer(self) -> IAddress:
        """The browser's address."""
        return self.peer

    def getHost(self) -> IAddress:
        """Our address."""
        return self.host


@implementer(IGracefulStop)
class ChatSocket:
    """
    One browser's WebSocket: the adapter between the socket's messages and
    a L{ChatProtocol}'s lines (see the module docstring).
    """

    log = Logger()

    def __init__(self, factory: ChatFactory, request: Request) -> None:
        self.factory = factory
        self.request = request
        self.member: ChatProtocol | None = None
        self.frames: LineFrames | None = None

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        """The socket is ours: keep it for the member made once the handshake is sent."""
        self.frames = LineFrames(transport, self.request)

    def negotiationFinished(self) -> None:
        """The handshake's answer is on its way: connect a chat member (it greets at once)."""
        if self.frames is None or self.frames.closed:
            return
        member = self.factory.buildProtocol(self.frames.peer)
        assert isinstance(member, ChatProtocol)
        self.member = member
        member.makeConnection(self.frames)

    def pongReceived(self, payload: bytes) -> None:
        """Pings are not used."""

    def textMessageReceived(self, message: str) -> None:
        """One message is one line, refused like an over-long line when it is one."""
        member = self.member
        if member is None:
            return
        progress = getattr(self.request.channel, "webSocketMessageDone", None)
        if progress is not None:
            progress()
        line = message.encode("utf-8", "surrogatepass")
        # A message holding line breaks would be several lines: it is cut
        # at the first, as a line-protocol client's would be split.
        if b"\n" in line or b"\r" in line:
            for part in line.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
                self.oneLine(member, part)
            return
        self.oneLine(member, line)

    def oneLine(self, member: ChatProtocol, line: bytes) -> None:
        """Hand one line to the member, as its line splitter would."""
        if len(line) > member.maxLineLength:
            member.lineTooLong(len(line))
        else:
            member.lineReceived(line)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        """Binary messages are not part of the chat: say so."""
        if self.member is not None:
            self.member.reply(b"*** error: send text messages, one line each\r\n")

    def serverStopping(self) -> None:
        """The server is going away: the member says goodbye."""
        if self.member is not None:
            self.member.serverStopping()

    def connectionLost(self, reason: Failure) -> None:
        """The browser went: the member leaves the hub."""
        if self.frames is not None:
            self.frames.closed = True
        if self.member is not None:
            self.member.connectionLost(reason)
            self.member = None


class ChatSockets:
    """The WebSocket factory: one L{ChatSocket} per accepted handshake."""

    def __init__(self, factory: ChatFactory) -> None:
        self.factory = factory

    def buildProtocol(self, request: Request) -> ChatSocket:
        """A member for this request's socket."""
        return ChatSocket(self.factory, request)


class ChatSocketResource(WebSocketResource):
    """The chat WebSocket, refusing (403) a handshake from another origin."""

    def __init__(self, factory: ChatFactory) -> None:
        super().__init__(ChatSockets(factory))

    def render_GET(self, request: Request) -> bytes | int:
        """Check the Origin, then let Twisted do the handshake."""
        if not sameOrigin(request, required=True):
            request.setResponseCode(http.FORBIDDEN)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"forbidden: this chat only accepts its own page (Origin mismatch)\n"
        return super().render_GET(request)


def chatResource(factory: ChatFactory, authEnabled: bool) -> Resource:
    """The resources of the chat page: C{/ws} and C{/api/info}."""
    root = Resource()
    root.putChild(b"ws", ChatSocketResource(factory))
    api = Resource()
    api.putChild(b"info", InfoResource({"service": "chat", "auth": authEnabled}))
    root.putChild(b"api", api)
    return root
