"""
The client side of TLS for ``tcplab``: options that verify the server, and
an endpoint that remembers how the server answered our hello, so a failed
handshake is explained (a plain-TCP port is not "TLS verification failed
(unexpected message)").
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

from tcplab.errors import ExitCode, TcplabError


def describeTLSError(failure: BaseException) -> str:
    """The reason inside an OpenSSL error, e.g. ``certificate verify failed``."""
    reasons = []
    for arg in getattr(failure, "args", ()):
        if isinstance(arg, list):
            reasons += [entry[-1] for entry in arg if isinstance(entry, tuple) and entry]
    return ", ".join(str(r) for r in reasons) or " ".join(str(failure).split())


def tlsOptions(host: str, cafile: str | None) -> IOpenSSLClientConnectionCreator:
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


def handshakeFailureReason(first: bytes) -> str | None:
    """
    Why a TLS handshake failed, judged from the first bytes the server sent
    (a plain-TCP port, say, rather than OpenSSL's parsing error); L{None}
    when they look like TLS and OpenSSL's own reason is the one to give.
    """
    if not first:
        return "the server closed the connection during the TLS handshake"
    if not looksLikeTLSFromServer(first):
        return "the server did not speak TLS (is it a plain TCP port?)"
    return None


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


def unwrapProtocol(protocol: IProtocol) -> IProtocol:
    """The protocol inside a wrapper (the TLS layer)."""
    assert isinstance(protocol, ProtocolWrapper)  # SniffingTLSFactory builds them
    return protocol.wrappedProtocol


@implementer(IStreamClientEndpoint)
class SniffingTLSEndpoint:
    """
    TLS over another client endpoint, as L{wrapClientTLS} does, keeping the
    first bytes the server sent so a failed handshake can say why.
    """

    def __init__(
        self, options: IOpenSSLClientConnectionCreator, wrapped: IStreamClientEndpoint
    ) -> None:
        self.options = options
        self.wrapped = wrapped

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        """Connect, start TLS, and return C{protocolFactory}'s protocol."""
        tls = SniffingTLSFactory(self.options, True, protocolFactory)
        attempt = self.wrapped.connect(tls)
        return attempt.addCallback(unwrapProtocol)
