"""
ALPN on tcplab's TLS listeners: a client that offers protocols we do not
name still gets its handshake.

Twisted 26.10's ALPN selection callback answers a client that offers ALPN
(every browser, curl, C{openssl s_client -alpn}) with C{b""} when the
listening factory names no protocol in common, and OpenSSL turns that into
an "internal error" alert: the handshake fails.  RFC 7301 lets a server that
shares no protocol with the client go on without one, which is what
pyOpenSSL's C{NO_OVERLAPPING_PROTOCOLS} answer does.  L{tolerateALPN}
installs such a callback on an C{ssl:} endpoint's context; a factory that
names protocols (L{IProtocolNegotiationFactory}, as the web listener's does)
still gets the first one the client offers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IProtocolNegotiationFactory


def selectProtocol(connection: SSL.Connection, offered: Sequence[bytes]) -> Any:
    """
    The first protocol the listening factory names that the client offered,
    or "none in common" (the handshake goes on without ALPN).
    """
    tls = connection.get_app_data()
    factory = getattr(getattr(tls, "factory", None), "wrappedFactory", None)
    negotiation = IProtocolNegotiationFactory(factory, None)
    for protocol in negotiation.acceptableProtocols() if negotiation is not None else ():
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def tolerateALPN(endpoint: Any) -> None:
    """
    Give an C{ssl:} server endpoint's TLS context L{selectProtocol} as its
    ALPN callback; any other endpoint is left as it is.

    The endpoint keeps its context options in C{_sslContextFactory} (a
    private name: C{tests/test_tls.py} fails loudly if Twisted renames it).
    """
    options = getattr(endpoint, "_sslContextFactory", None)
    getContext = getattr(options, "getContext", None)
    if getContext is not None:
        getContext().set_alpn_select_callback(selectProtocol)
