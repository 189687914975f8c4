"""
The echo service over UDP, and the policy that keeps it from being looped
or used as a reflector.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet import udp
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from tcplab.echo.modes import DEFAULT_ACK, parseMode, replyFor
from tcplab.flood import TokenBucket

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
