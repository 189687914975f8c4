"""
The policy pieces of the web front door, in memory: the Origin check, the
bounded session store and its token check, URL path decoding, the
slow-drip marker of the HTTP channel, and the start-up QR announcement.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from tcplab.files.errors import BadRequest, NotAllowed
from tcplab.web.pages import PageRoot, asset
from tcplab.web.paths import nameFromRawPath, nameFromSegments
from tcplab.web.qr import announce, qrText, urlsFor
from tcplab.web.security import TOKEN_HEADER, SessionStore, sameOrigin
from tcplab.web.site import WebSite
from tcplab.web.tap import announceListener


def request(headers: dict[bytes, bytes], secure: bool = False) -> Request:
    """A request with these headers."""
    made = Request(DummyChannel())
    for name, value in headers.items():
        made.requestHeaders.setRawHeaders(name, [value])
    made.parseCookies()
    made.isSecure = lambda: secure  # type: ignore[method-assign]
    return made


def test_originMustBeThisHostAndPort() -> None:
    """Only an Origin of this scheme, host and port passes; a missing one only if optional."""
    host = {b"host": b"192.168.1.5:8080"}
    assert sameOrigin(request({**host, b"origin": b"http://192.168.1.5:8080"}), True)
    assert not sameOrigin(request({**host, b"origin": b"http://192.168.1.5:8081"}), True)
    assert not sameOrigin(request({**host, b"origin": b"https://192.168.1.5:8080"}), True)
    assert not sameOrigin(request({**host, b"origin": b"http://evil.example"}), True)
    assert sameOrigin(request({**host, b"origin": b"https://192.168.1.5:8080"}, True), True)
    assert not sameOrigin(request(host), required=True)
    assert sameOrigin(request(host), required=False)


def cookieOf(made: Request) -> bytes:
    """The session cookie a response sets, as the browser sends it back."""
    return made.cookies[-1].split(b";", 1)[0]


def test_sessionStoreIsBoundedAndTimed() -> None:
    """The store keeps at most maxSessions (oldest out first) and forgets expired ones."""
    now = [0.0]
    store = SessionStore(maxSessions=2, lifetime=10, clock=lambda: now[0])
    cookies = []
    for _ in range(3):
        made = request({})
        store.start(made)
        cookies.append(cookieOf(made))
    assert len(store) == 2
    assert store.find(request({b"cookie": cookies[0]})) is None
    assert store.find(request({b"cookie": cookies[2]})) is not None
    now[0] = 11
    assert store.find(request({b"cookie": cookies[2]})) is None


def test_authorisedNeedsCookieAndToken() -> None:
    """A state change needs the cookie's session and its token; a foreign Origin fails it."""
    store = SessionStore()
    made = request({})
    session = store.start(made)
    cookie = cookieOf(made)
    good = {b"cookie": cookie, TOKEN_HEADER: session.token.encode(), b"host": b"h:1"}
    assert store.authorised(request(good)) is session
    assert store.authorised(request({**good, TOKEN_HEADER: b"guess"})) is None
    assert store.authorised(request({TOKEN_HEADER: session.token.encode()})) is None
    assert store.authorised(request({**good, b"origin": b"http://evil.example"})) is None
    assert b"samesite=strict" in made.cookies[-1].lower() and b"HttpOnly" in made.cookies[-1]


@pytest.mark.parametrize(
    ("segments", "error"),
    [([b"a", b"..%2F"], None), ([b"a/b"], NotAllowed), ([b"\xff"], BadRequest)],
)
def test_pathSegmentsRefuseEncodedSlashes(segments: list[bytes], error: type | None) -> None:
    """A decoded segment holding a slash is refused; invalid UTF-8 is a bad request."""
    if error is None:
        assert nameFromSegments(segments) == "a/..%2F"
    else:
        with pytest.raises(error):
            nameFromSegments(segments)


def test_rawPathDecodesSegmentBySegment() -> None:
    """The upload path is decoded as Twisted decodes the URL; %2F is refused."""
    assert nameFromRawPath(b"/api/upload/a%20b/c.txt?size=1", b"/api/upload/") == "a b/c.txt"
    with pytest.raises(NotAllowed):
        nameFromRawPath(b"/api/upload/..%2Fetc", b"/api/upload/")


def test_channelReportsHalfReceivedHeaders() -> None:
    """The channel's slow-drip marker is set while headers are half-received, and moves on."""
    site = WebSite(PageRoot("chat.html", [], Resource()))
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    assert channel is not None
    channel.makeConnection(StringTransport())
    assert channel.messageInProgress() is None
    channel.dataReceived(b"GET / HTTP/1.1\r\nHo")
    first = channel.messageInProgress()
    assert first is not None
    channel.dataReceived(b"st: x\r\n")
    assert channel.messageInProgress() == first  # more bytes, same unfinished request
    channel.dataReceived(b"\r\n")
    assert channel.messageInProgress() is None
    channel.connectionLost(None)


def test_loopbackAndUnixListenersGetNoQrCode() -> None:
    """Only a listener others can reach is announced with URLs."""
    assert urlsFor(IPv4Address("TCP", "127.0.0.1", 8080), False) == []
    assert urlsFor(IPv6Address("TCP", "::1", 8080), False) == []
    assert urlsFor(UNIXAddress("/tmp/s"), False) == []
    assert urlsFor(IPv4Address("TCP", "192.168.1.5", 8443), True) == ["https://192.168.1.5:8443/"]
    assert urlsFor(IPv6Address("TCP", "fd00::5", 80), False) == ["http://[fd00::5]:80/"]
    for url in urlsFor(IPv4Address("TCP", "0.0.0.0", 8080), False):
        assert url.startswith("http://") and url.endswith(":8080/")
        assert "127.0.0.1" not in url


def test_announcementPrintsTheUrlAndAQrCode() -> None:
    """The announcement names each URL and draws the first as a terminal QR code."""
    out = io.StringIO()
    announce("tcplab-chat web", ["http://192.168.1.5:8080/"], out)
    text = out.getvalue()
    assert "open http://192.168.1.5:8080/ in a browser" in text
    assert qrText("http://192.168.1.5:8080/") in text
    assert "█" in text and len(qrText("http://192.168.1.5:8080/").splitlines()) >= 12
    out = io.StringIO()
    announce("x", [], out)
    assert out.getvalue() == ""


class FakePort:
    """A listening port bound where the test says."""

    def __init__(self, address: object) -> None:
        self.address = address

    def getHost(self) -> object:
        """The bound address."""
        return self.address


def anyPort(address: object) -> Any:
    """A L{FakePort}, as the listening port the announcement expects."""
    return FakePort(address)


def test_listenerOnAllInterfacesIsAnnouncedWithAQrCode() -> None:
    """A listener on 0.0.0.0 prints this machine's URLs and a QR code; loopback prints nothing."""
    out = io.StringIO()
    announceListener("tcplab-files web", anyPort(IPv4Address("TCP", "0.0.0.0", 8081)), False, out)
    urls = urlsFor(IPv4Address("TCP", "0.0.0.0", 8081), False)
    if urls:  # a machine with no network but loopback has nothing to announce
        assert f"open {urls[0]} in a browser" in out.getvalue()
        assert qrText(urls[0]) in out.getvalue()
    out = io.StringIO()
    announceListener("x", anyPort(IPv4Address("TCP", "127.0.0.1", 8081)), False, out)
    assert out.getvalue() == ""


@pytest.mark.parametrize("name", ["chat.html", "chat.js", "files.html", "files.js", "style.css"])
def test_assetsAskForNothingElsewhereAndHaveNoInlineCode(name: str) -> None:
    """The pages load nothing from elsewhere and hold no inline script, style or handler."""
    text = asset(name).decode("utf-8")
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    if name.endswith(".html"):
        assert re.findall(r"<script(?![^>]*\bsrc=)", text) == []
        assert "<style" not in text and " style=" not in text
        assert re.findall(r"\son[a-z]+=", text) == []
        assert '<meta name="viewport"' in text
    if name.endswith(".js"):
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text
