"""
The C{--web ENDPOINT} option of the chat and files plugins: the web pages'
listeners, in the plugin's service tree like every other listener.

L{addWebListeners} wraps the page's L{WebSite} in the service's own
L{ConnectionObserver} settings (so the web listener has the same connection
limits, idle and slow-drip timeouts and metrics, counted with the label
C{listener="web"}) and adds one all-or-none L{ListeningService} to the
plugin's tree.  Each address is logged once up; one reachable from other
machines is also printed with a QR code (L{tcplab.web.qr}).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from twisted.application.service import MultiService
from twisted.internet.interfaces import IListeningPort, IProtocolNegotiationFactory
from twisted.logger import Logger
from zope.interface import implementer

from tcplab.errors import CannotListen
from tcplab.metrics import Metrics, Sample
from tcplab.observe import ConnectionObserver
from tcplab.settings import ServiceSettings
from tcplab.tap.listening import ListeningService
from tcplab.web.qr import announce, urlsFor
from tcplab.web.site import WebSite

if TYPE_CHECKING:
    from tcplab.chat.protocol import ChatFactory
    from tcplab.files.server import FileServerFactory

WEB_HELP = (
    "Also serve the web page on this endpoint (repeatable; off by default), "
    "e.g. tcp:8080 or ssl:8443:privateKey=key.pem:certKey=cert.pem."
)

BROWSER_CONNECTIONS = 6
"""Connections a browser opens to one site at once (Chromium's and Firefox's limit)."""

log = Logger()


@implementer(IProtocolNegotiationFactory)
class WebObserver(ConnectionObserver):
    """
    The connection wrapper of a web listener, which says over TLS (ALPN)
    that it speaks HTTP/1.1, so a browser offering C{h2} and C{http/1.1}
    settles on the one twisted.web serves here.  (A listener that names no
    protocol still serves ALPN clients: see L{tcplab.alpn}.)
    """

    def acceptableProtocols(self) -> list[bytes]:
        """HTTP/1.1 only (twisted.web's HTTP/2 is not used here)."""
        return [b"http/1.1"]


def webSettings(settings: ServiceSettings) -> ServiceSettings:
    """
    The service's settings as the web listener applies them: the same limits
    and timeouts, except that one person's allowance of connections per
    address is a browser's (L{BROWSER_CONNECTIONS}) for each the line
    protocol allows; twisted.web writes through its own producers.
    """
    perPeer = settings.maxPerPeer
    return dataclasses.replace(
        settings,
        maxPerPeer=perPeer * BROWSER_CONNECTIONS if perPeer else None,
        writeDirectly=False,
    )


def addWebListeners(
    parent: MultiService,
    settings: ServiceSettings,
    descriptions: Sequence[str],
    site: WebSite,
    metrics: Metrics,
    out: IO[str] | None = None,
) -> ListeningService:
    """
    Serve C{site} on every description, as part of C{parent}'s start-up.

    @raise SystemExit: a malformed description (one line, status 10).
    """
    observer = WebObserver(site, webSettings(settings))

    def webConnections() -> list[Sample]:
        samples = observer.collectMetrics()
        return [(name, {**labels, "listener": "web"}, v) for name, labels, v in samples]

    metrics.addCollector(webConnections)
    label = f"{settings.serviceName} web"
    try:
        service = ListeningService(
            label,
            descriptions,
            observer,
            shutdownTimeout=settings.shutdownTimeout,
            # Under --workers every worker opens the web address too.
            reusePort=settings.workerIndex is not None,
        )
    except CannotListen as e:
        print(f"{settings.serviceName}: {e}", file=sys.stderr)
        raise SystemExit(e.exitCode) from None
    secure = [d.lower().startswith("ssl:") for d in descriptions]

    def up(ports: list[IListeningPort]) -> list[IListeningPort]:
        for endpoint, isSecure in zip(service.endpoints, secure):
            if endpoint.port is not None:
                announceListener(label, endpoint.port, isSecure, out)
        return ports

    service.listening.addCallback(up)
    service.setServiceParent(parent)
    return service


def announceListener(label: str, port: IListeningPort, secure: bool, out: IO[str] | None) -> None:
    """Log where the page is, with a QR code when other machines can reach it."""
    urls = urlsFor(port.getHost(), secure)
    for url in urls:
        log.info("{label}: the page is at {url}", label=label, url=url)
    try:
        announce(label, urls, out or sys.__stdout__ or sys.stdout)
    except Exception:
        log.failure("{label}: could not print the QR code", label=label)


def addChatWeb(
    parent: MultiService,
    settings: ServiceSettings,
    descriptions: Sequence[str],
    factory: ChatFactory,
) -> ListeningService:
    """The chat page on C{descriptions}, its members joining C{factory}'s hub."""
    from tcplab.web.chat import chatResource
    from tcplab.web.pages import PageRoot

    api = chatResource(factory, factory.authenticator.enabled)
    site = WebSite(PageRoot("chat.html", ["chat.js", "style.css"], api))
    return addWebListeners(parent, settings, descriptions, site, factory.metrics)


def addFilesWeb(
    parent: MultiService,
    settings: ServiceSettings,
    descriptions: Sequence[str],
    factory: FileServerFactory,
) -> ListeningService:
    """The files page on C{descriptions}, serving C{factory}'s root with its rules."""
    from tcplab.web.files import FilesSite

    return addWebListeners(parent, settings, descriptions, FilesSite(factory), factory.metrics)
