"""
What keeps the pages safe: response headers, sessions, and the checks
against cross-site requests.

Every response carries a strict Content-Security-Policy (scripts, styles and
connections from this origin only; no inline code, no framing),
C{X-Content-Type-Options: nosniff} and C{Referrer-Policy: no-referrer}.  A
browser gets a session cookie (C{HttpOnly}, C{SameSite=Strict}, C{Secure}
under TLS) naming a L{Session} in a bounded L{SessionStore}; a request that
changes something must also carry the session's token in the
C{X-Tcplab-Token} header and, when it says where it comes from, an C{Origin}
that is this very host and port.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from twisted.web.server import Request

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""The policy of every page: nothing from elsewhere, nothing inline, never framed."""

DOWNLOAD_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
"""The policy of a served file: whatever it contains, it runs nothing here."""

COOKIE = b"tcplab_session"
TOKEN_HEADER = b"x-tcplab-token"
MAX_SESSIONS = 10_000
SESSION_LIFETIME = 12 * 3600.0


def setSecurityHeaders(request: Request, policy: str = CONTENT_SECURITY_POLICY) -> None:
    """Give a response the headers every tcplab page carries."""
    headers = request.responseHeaders
    headers.setRawHeaders(b"content-security-policy", [policy.encode("ascii")])
    headers.setRawHeaders(b"x-content-type-options", [b"nosniff"])
    headers.setRawHeaders(b"referrer-policy", [b"no-referrer"])
    headers.setRawHeaders(b"x-frame-options", [b"DENY"])
    headers.setRawHeaders(b"cross-origin-opener-policy", [b"same-origin"])
    headers.setRawHeaders(b"cross-origin-resource-policy", [b"same-origin"])


def ownOrigin(request: Request) -> bytes | None:
    """The origin this request was addressed to (scheme, Host header), or None."""
    host = request.getHeader(b"host")
    if not host:
        return None
    scheme = b"https" if request.isSecure() else b"http"
    return scheme + b"://" + host.lower()


def sameOrigin(request: Request, required: bool) -> bool:
    """
    Whether the request's C{Origin} is this host and port.  A request
    without one passes unless C{required} (browsers always send it on a
    WebSocket handshake and on cross-site POST, PUT and DELETE).
    """
    origin = request.getHeader(b"origin")
    if origin is None:
        return not required
    expected = ownOrigin(request)
    return expected is not None and hmac.compare_digest(origin.lower(), expected)


@dataclass
class Session:
    """One browser's session: its anti-forgery token and who logged in."""

    key: str
    token: str
    created: float
    user: str | None = None


class SessionStore:
    """
    Sessions by cookie value, at most C{maxSessions} (the oldest goes first)
    and each for at most C{lifetime} seconds.
    """

    def __init__(
        self,
        maxSessions: int = MAX_SESSIONS,
        lifetime: float = SESSION_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.maxSessions = maxSessions
        self.lifetime = lifetime
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def find(self, request: Request) -> Session | None:
        """The live session the request's cookie names, if any."""
        value = request.getCookie(COOKIE)
        if not value:
            return None
        session = self._sessions.get(value.decode("ascii", "replace"))
        if session is None:
            return None
        if self.clock() - session.created > self.lifetime:
            del self._sessions[session.key]
            return None
        return session

    def start(self, request: Request, user: str | None = None) -> Session:
        """A new session, its cookie set on the response (replacing any old one)."""
        old = self.find(request)
        if old is not None:
            del self._sessions[old.key]
        while len(self._sessions) >= self.maxSessions:
            self._sessions.popitem(last=False)
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock(), user)
        self._sessions[session.key] = session
        request.addCookie(
            COOKIE,
            session.key.encode("ascii"),
            path=b"/",
            max_age=str(int(self.lifetime)).encode("ascii"),
            secure=request.isSecure(),
            httpOnly=True,
            sameSite="strict",
        )
        return session

    def findOrStart(self, request: Request) -> Session:
        """The request's session, started if it has none."""
        return self.find(request) or self.start(request)

    def end(self, request: Request) -> None:
        """Forget the request's session."""
        session = self.find(request)
        if session is not None:
            del self._sessions[session.key]

    def authorised(self, request: Request) -> Session | None:
        """
        The session of a state-changing request that proves it comes from our
        own page (its session's token in the header, and no foreign Origin),
        or None.
        """
        if not sameOrigin(request, required=False):
            return None
        session = self.find(request)
        token = request.getHeader(TOKEN_HEADER)
        if session is None or token is None:
            return None
        if not hmac.compare_digest(token, session.token.encode("ascii")):
            return None
        return session
