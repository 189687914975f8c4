"""
The echo service: RFC 862 echo and the socket tutorials' variants.

Embed any of these in a Twisted program::

    from twisted.internet import endpoints, reactor
    from tcplab.echo import EchoFactory
    endpoints.serverFromString(reactor, "tcp:0").listen(EchoFactory())

Each reply mode is defined once, by L{replyFor}: what a message is answered
with.  TCP and UDP both use it; what differs is what a message is (a
datagram; on a stream, a read or a line) and that on a stream the ack and
count replies end with a line end.

Protocols:
  - L{EchoProtocol}: every byte back, unchanged (RFC 862), with
    backpressure and half-close.
  - L{UpperEchoProtocol}: the same stream, upper-cased (ASCII letters).
  - L{AckProtocol}: one fixed acknowledgement per chunk read, as the
    tutorial server does (one C{recv} is not one message: see C{--trace}).
  - L{CountingLineProtocol}: a welcome banner, each line answered as
    ``N: line``, C{exit} to leave; L{CountingReadProtocol} answers each
    read instead, as the tutorial's server with one C{recv} does.
  - L{EchoDatagramProtocol}: UDP, each datagram answered to its sender,
    unless L{DatagramPolicy} says not to (loops, reflection, floods).
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal, get_args

from twisted.internet import udp
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from tcplab.chat.flood import TokenBucket
from tcplab.interfaces import IGracefulStop
from tcplab.lines import LineProtocol

Mode = Literal["echo", "upper", "ack", "count"]
"""The reply modes the echo service offers, by name."""

MODES: tuple[Mode, ...] = get_args(Mode)

DEFAULT_ACK = b"received"
DEFAULT_BANNER = b"Welcome to tcplab echo. Send lines; 'exit' to leave."
EXIT_LINE = b"exit"
LINE_END = b"\r\n"

Reply = Callable[[bytes], bytes]
"""What a message is answered with."""


def parseMode(name: str) -> Mode:
    """C{name} as a L{Mode}; L{ValueError} if it is not one."""
    for mode in MODES:
        if name == mode:
            return mode
    raise ValueError(f"unknown echo mode {name!r}; choose from {', '.join(MODES)}")


class Counter:
    """The count mode's reply: ``N: message``, N counting from 1."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: bytes) -> bytes:
        """Number C{message}."""
        self.count += 1
        return b"%d: %s" % (self.count, message)


def echoed(message: bytes) -> bytes:
    """The echo mode's reply: the message itself."""
    return message


def replyFor(mode: Mode, ack: bytes = DEFAULT_ACK) -> Reply:
    """
    The one definition of each mode: C{echo} gives the message back,
    C{upper} upper-cases its ASCII letters, C{ack} answers C{ack} whatever
    arrived, C{count} numbers the messages (a fresh counter per call).
    """
    if mode == "upper":
        return bytes.upper
    if mode == "ack":
        return lambda message: ack
    if mode == "count":
        return Counter()
    return echoed


@implementer(IHalfCloseableProtocol, IGracefulStop)
class EchoProtocol(Protocol):
    """
    RFC 862 echo: send back every byte received, unchanged.

    Backpressure: the transport is registered as its own streaming producer,
    so when its write buffer is full it stops reading from this peer, and it
    resumes when the buffer drains.  A peer that sends without reading only
    fills its own socket buffers, never the server's memory.

    Half-close: when the peer shuts down its sending side, everything it sent
    is still echoed before the connection closes.
    """

    transport: Any
    """A stream transport: also a consumer and a push producer."""

    def __init__(self, reply: Reply = echoed) -> None:
        self.reply = reply
        """What a chunk read is answered with (the mode's reply)."""

    def connectionMade(self) -> None:
        """Pause reading whenever our outgoing buffer is full."""
        assert self.transport is not None
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        """Answer the chunk."""
        self.transport.write(self.reply(data))

    def finish(self) -> None:
        """Send what we still owe, then close."""
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """The peer sent EOF: finish sending what we owe, then close."""
        self.finish()

    def serverStopping(self) -> None:
        """The server is shutting down: finish up the same way."""
        self.finish()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we never half-close ourselves."""


class UpperEchoProtocol(EchoProtocol):
    """Echo the stream with ASCII letters upper-cased (other bytes unchanged)."""

    def __init__(self) -> None:
        super().__init__(replyFor("upper"))


class AckProtocol(EchoProtocol):
    """
    Answer every chunk read with a fixed acknowledgement line, as the
    tutorial server does after each C{recv}.
    """

    def __init__(self, ack: bytes = DEFAULT_ACK) -> None:
        acknowledge = replyFor("ack", ack)
        super().__init__(lambda data: acknowledge(data) + LINE_END)


class CountingReadProtocol(EchoProtocol):
    """
    Count mode, per read: greet the client, answer each chunk read with
    ``N: chunk`` (as the tutorial server answers each C{recv}, so a client
    that sends C{hello} without a newline gets its answer), and close on a
    read that is just C{exit}.
    """

    def __init__(self, banner: bytes = DEFAULT_BANNER) -> None:
        super().__init__(replyFor("count"))
        self.banner = banner

    def connectionMade(self) -> None:
        """Send the banner."""
        super().connectionMade()
        if self.banner:
            self.transport.write(self.banner + LINE_END)

    def dataReceived(self, data: bytes) -> None:
        """Number the chunk (without its line end); close on C{exit}."""
        message = data.rstrip(b"\r\n")
        if message.strip() == EXIT_LINE:
            self.transport.write(b"bye" + LINE_END)
            self.finish()
            return
        self.transport.write(self.reply(message) + LINE_END)


@implementer(IGracefulStop)
class CountingLineProtocol(LineProtocol):
    """
    Count mode, per line: greet the client, answer each line with a running
    count (``3: hello``), and say goodbye and close on the line C{exit}.
    """

    log = Logger()
    transport: Any

    def __init__(self, banner: bytes = DEFAULT_BANNER, maxLineLength: int = 16384) -> None:
        self.banner = banner
        self.maxLineLength = maxLineLength
        self.counter = replyFor("count")

    def connectionMade(self) -> None:
        """Send the banner."""
        assert self.transport is not None
        self.transport.registerProducer(self.transport, True)
        if self.banner:
            self.sendLine(self.banner)

    def lineReceived(self, line: bytes) -> None:
        """Count the line and answer it; close on C{exit}."""
        if line.strip() == EXIT_LINE:
            self.sendLine(b"bye")
            self.finish()
            return
        self.sendLine(self.counter(line))

    def finish(self) -> None:
        """Send what we still owe, then close."""
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def serverStopping(self) -> None:
        """The server is shutting down: say so and close."""
        self.sendLine(b"server shutting down, bye")
        self.finish()

    def lineTooLong(self, size: int) -> None:
        """Say so; the connection stays open."""
        self.sendLine(b"error: line too long (%d bytes, at most %d)" % (size, self.maxLineLength))


class EchoFactory(Factory):
    """
    Build echo protocols for one reply mode (see L{Mode}).

    @ivar mode: C{echo} (RFC 862), C{upper}, C{ack} or C{count}.
    @ivar ack: the acknowledgement for C{ack} mode.
    @ivar banner: the greeting for C{count} mode.
    @ivar perRead: count mode answers every read (L{CountingReadProtocol})
        instead of every line (L{CountingLineProtocol}).
    """

    noisy = False

    def __init__(
        self,
        mode: str = "echo",
        ack: bytes = DEFAULT_ACK,
        banner: bytes = DEFAULT_BANNER,
        perRead: bool = False,
    ) -> None:
        self.mode = parseMode(mode)
        self.ack = ack
        self.banner = banner
        self.perRead = perRead

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A fresh protocol for the configured mode."""
        protocol: Protocol
        if self.mode == "upper":
            protocol = UpperEchoProtocol()
        elif self.mode == "ack":
            protocol = AckProtocol(self.ack)
        elif self.mode == "count" and self.perRead:
            protocol = CountingReadProtocol(self.banner)
        elif self.mode == "count":
            protocol = CountingLineProtocol(self.banner)
        else:
            protocol = EchoProtocol()
        protocol.factory = self
        return protocol


MAX_DATAGRAM = 65507
"""The largest UDP payload over IPv4 (65,535 less the IP and UDP headers)."""

DATAGRAM_RATE = 50.0
"""Replies per second to one source address, on average."""

DATAGRAM_BURST = 100.0
"""Replies one source address may get at once."""

MAX_SOURCES = 4096
"""Source addresses whose reply rate is remembered at once."""


class DatagramPolicy:
    """
    Which datagrams a UDP echo answers, so that it can be neither looped
    nor used as a reflector:

      - never one from a port below 1024 (echo, chargen, daytime, DNS ...:
        two such services answering each other loop forever);
      - never one from our own port, on any host: ourselves (a spoofed
        source), or another echo service on the same port;
      - at most C{rate} replies a second per source host (bursts of
        C{burst}), remembered for at most C{maxSources} hosts.  When the
        table is full, a host idle long enough to be back at a full burst
        is forgotten; if none is, the new host gets no reply, so spraying
        spoofed sources cannot buy more replies.

    @ivar ownPort: our listening port, once known.
    """

    def __init__(
        self,
        rate: float = DATAGRAM_RATE,
        burst: float = DATAGRAM_BURST,
        maxSources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.maxSources = maxSources
        self.clock = clock
        self.ownPort: int | None = None
        self.sources: OrderedDict[str, TokenBucket] = OrderedDict()
        self.refused = 0
        """Datagrams left unanswered so far."""

    def allows(self, host: str, port: int) -> bool:
        """Whether a datagram from C{host}:C{port} gets a reply (spending one)."""
        if port < 1024 or port == self.ownPort or not self.withinRate(host):
            self.refused += 1
            return False
        return True

    def withinRate(self, host: str) -> bool:
        """Spend one of C{host}'s replies, if it has one left."""
        if not self.rate:
            return True
        bucket = self.sources.get(host)
        if bucket is None:
            if len(self.sources) >= self.maxSources and not self.forgetOldest():
                return False
            bucket = self.sources[host] = TokenBucket(self.rate, self.burst, self.clock)
        else:
            self.sources.move_to_end(host)
        return bucket.take() == 0

    def forgetOldest(self) -> bool:
        """Forget the least recently seen host if it is back at a full burst."""
        host, bucket = next(iter(self.sources.items()))
        if self.clock() - bucket.updated < self.burst / self.rate:
            return False
        del self.sources[host]
        return True


class EchoDatagramProtocol(DatagramProtocol):
    """
    UDP echo: answer each datagram (up to L{MAX_DATAGRAM} bytes, intact) to
    its sender in the configured mode, when L{DatagramPolicy} allows
    (C{count} numbers datagrams per server, not per sender).
    """

    log = Logger()
    noisy = False
    maxPacketSize = 65535
    """The read size: Twisted's default, 8192, cuts longer datagrams short."""

    def __init__(
        self, mode: str = "echo", ack: bytes = DEFAULT_ACK, policy: DatagramPolicy | None = None
    ) -> None:
        self.mode = parseMode(mode)
        self.reply = replyFor(self.mode, ack)
        self.policy = policy if policy is not None else DatagramPolicy()

    def startProtocol(self) -> None:
        """Read whole datagrams; learn our port; warn when the network can reach us."""
        assert self.transport is not None
        if isinstance(self.transport, udp.Port):
            # The port reads with its own size, given to listenUDP (8192 by
            # default): whoever binds it, read every datagram whole.
            self.transport.maxPacketSize = max(self.transport.maxPacketSize, self.maxPacketSize)
        address = self.transport.getHost()
        self.policy.ownPort = address.port
        if not ipaddress.ip_address(address.host or "0.0.0.0").is_loopback:
            self.log.warn(
                "UDP echo listens on {host}:{port}, beyond loopback: anyone who can "
                "forge a source address can aim its replies at a third party "
                "(replies are rate-limited per source; see --udp in the README)",
                host=address.host,
                port=address.port,
            )

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Send the reply back to where the datagram came from, if allowed."""
        assert self.transport is not None
        host, port = addr[0], addr[1]
        if not self.policy.allows(host, port):
            return
        try:
            self.transport.write(self.reply(datagram), addr)
        except OSError as e:
            # e.g. the reply is too large for the path back; the next
            # datagram may fare better, so keep serving.
            self.log.warn("UDP reply to {peer} failed: {error}", peer=addr, error=e)
