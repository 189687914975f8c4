"""
The files page's resources: browse, download (with HTTP ranges), delete,
log in, and the upload endpoint whose body L{FilesSite} streams into an
L{UploadSink}.

Everything goes through the file service's own L{FileServerFactory}: its
L{SafeRoot} (confinement), its permissions (C{--writable}, C{--auth},
C{--no-anonymous}), its limits, metrics and transfer log.  A request that
changes something needs the session's token header (L{SessionStore.authorised}).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import cast
from urllib.parse import quote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource
from twisted.web.server import Request

from tcplab.auth import LoginFailed

with warnings.catch_warnings():
    # twisted.web.static builds deprecated error pages at import time (Twisted
    # 26.10); we use only its File resource, for ranges and producers.
    warnings.simplefilter("ignore", DeprecationWarning)
    from twisted.web import static

from tcplab.files.errors import (
    AlreadyExists,
    AuthFailed,
    AuthRequired,
    BadRequest,
    Busy,
    ChecksumMismatch,
    FileServiceError,
    NoSpace,
    NotAllowed,
    NotFound,
    TooLarge,
)
from tcplab.files.listing import describeEach, readNames
from tcplab.files.records import OK, TransferRecord, recordTransfer
from tcplab.files.server import FileServerFactory
from tcplab.files.session import checkPermission
from tcplab.files.storage import deletePath
from tcplab.transports import ConnectionTransport
from tcplab.web.pages import PageRoot, jsonError, jsonResponse
from tcplab.web.paths import nameFromRawPath, nameFromSegments
from tcplab.web.security import DOWNLOAD_POLICY, SessionStore
from tcplab.web.site import BodySink, Refused, WebRequest, WebSite
from tcplab.web.uploads import OffsetMismatch, UploadSink, resumeOffset, uploadRange

MAX_LISTING = 10_000
"""Entries a directory listing shows at most (the page says when there are more)."""

STATUS = {
    NotFound: http.NOT_FOUND,
    NotAllowed: http.FORBIDDEN,
    AlreadyExists: http.CONFLICT,
    OffsetMismatch: http.CONFLICT,
    TooLarge: http.REQUEST_ENTITY_TOO_LARGE,
    BadRequest: http.BAD_REQUEST,
    ChecksumMismatch: 422,
    NoSpace: 507,
    Busy: http.SERVICE_UNAVAILABLE,
    AuthRequired: http.UNAUTHORIZED,
    AuthFailed: http.UNAUTHORIZED,
}

UPLOAD_PREFIX = b"/api/upload/"
FORGED = "forbidden: missing or wrong X-Tcplab-Token (reload the page)"


def statusOf(error: FileServiceError) -> int:
    """The HTTP status for a file service error."""
    return STATUS.get(type(error), http.INTERNAL_SERVER_ERROR)


def errorExtra(error: FileServiceError) -> dict[str, object]:
    """What an error's JSON answer carries besides the message."""
    return {"offset": error.offset} if isinstance(error, OffsetMismatch) else {}


def peerOf(request: Request) -> str:
    """The client's address, for the transfer log."""
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return f"{host}:{address.port}" if host is not None else str(address)


class FilesResource(Resource):
    """What every files resource shares: the factory, the sessions, the user."""

    isLeaf = True
    log = Logger()

    def __init__(self, factory: FileServerFactory, sessions: SessionStore) -> None:
        super().__init__()
        self.factory = factory
        self.sessions = sessions

    def user(self, request: Request) -> str | None:
        """The logged-in user of the request's session, if any."""
        session = self.sessions.find(request)
        return session.user if session is not None else None

    def name(self, request: Request) -> str:
        """The name under the root that the rest of the URL spells."""
        return nameFromSegments(request.postpath or [])

    def answer(self, request: Request, job: Callable[[], object]) -> int:
        """Run C{job} (may return a Deferred) and answer with its JSON or its error."""
        d = defer.maybeDeferred(job)

        def done(document: object) -> None:
            if not request._disconnected:
                request.write(jsonResponse(request, document))
                request.finish()

        def failed(failure: Failure) -> None:
            if request._disconnected:
                return
            error = failure.value
            if isinstance(error, FileServiceError):
                body = jsonError(request, statusOf(error), error.message, **errorExtra(error))
            elif failure.check(LoginFailed):
                body = jsonError(request, http.UNAUTHORIZED, "wrong user name or password")
            else:
                self.log.failure("web request failed", failure)
                body = jsonError(request, http.INTERNAL_SERVER_ERROR, "internal error")
            request.write(body)
            request.finish()

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


class SessionResource(FilesResource):
    """C{GET /api/session}: the token, the user, and what this server allows."""

    def render_GET(self, request: Request) -> bytes:
        """The session (started if new) and the server's settings."""
        session = self.sessions.findOrStart(request)
        factory = self.factory
        return jsonResponse(
            request,
            {
                "token": session.token,
                "user": session.user,
                "auth": bool(factory.authenticator.enabled),
                "anonymousReads": bool(factory.anonymousReads),
                "writable": bool(factory.writable),
                "maxSize": factory.maxSize,
            },
        )


class LoginResource(FilesResource):
    """C{POST /api/login} (JSON user and password) and C{POST /api/logout}."""

    def render_POST(self, request: Request) -> bytes | int:
        """Log in (a new session, so an old cookie is worth nothing), or out."""
        if self.sessions.authorised(request) is None:
            return jsonError(request, http.FORBIDDEN, FORGED)
        if request.prepath and request.prepath[-1] == b"logout":
            self.sessions.end(request)
            session = self.sessions.start(request)
            return jsonResponse(request, {"ok": True, "token": session.token, "user": None})
        try:
            assert request.content is not None
            form = json.loads(request.content.read())
            user, password = form["user"], form["password"]
            if not isinstance(user, str) or not isinstance(password, str):
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError):
            return jsonError(request, http.BAD_REQUEST, 'send {"user": ..., "password": ...}')
        if not self.factory.authenticator.enabled:
            return jsonError(request, http.BAD_REQUEST, "this server has no accounts")

        async def login() -> dict[str, object]:
            name = await self.factory.authenticator.login(user, password, peerOf(request))
            session = self.sessions.start(request, user=name)
            return {"ok": True, "user": name, "token": session.token}

        return self.answer(request, lambda: defer.ensureDeferred(login()))


class ListResource(FilesResource):
    """C{GET /api/list/DIR}: a directory's entries (read off the reactor thread)."""

    def render_GET(self, request: Request) -> int:
        """The listing, at most L{MAX_LISTING} entries."""

        def job() -> defer.Deferred[dict[str, object]]:
            checkPermission(self.factory, self.user(request), "list")
            name = self.name(request)
            root = self.factory.root
            path = root.existing(name)
            if not path.isdir():
                raise BadRequest(f"not a directory: {name!r}")

            def read() -> dict[str, object]:
                names = readNames(path)
                entries = list(describeEach(path, names[:MAX_LISTING], root))
                return {
                    "ok": True,
                    "path": root.relative(path),
                    "entries": entries,
                    "truncated": len(names) > MAX_LISTING,
                }

            return self.factory.work.run(read)

        return self.answer(request, job)


class FileResource(FilesResource):
    """C{/files/NAME}: C{GET} downloads (ranges too), C{DELETE} deletes."""

    def render_GET(self, request: Request) -> bytes | int:
        """Send the file as an attachment, whatever its type; ranges honoured."""
        try:
            checkPermission(self.factory, self.user(request), "get")
            name = self.name(request)
            path = self.factory.root.existing(name)
            if not path.isfile():
                raise NotAllowed(f"not a file: {name!r}")
        except FileServiceError as e:
            return jsonError(request, statusOf(e), e.message)
        request.setHeader(b"content-security-policy", DOWNLOAD_POLICY.encode("ascii"))
        disposition = "attachment; filename*=UTF-8''" + quote(path.basename(), safe="")
        request.setHeader(b"content-disposition", disposition.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        record = TransferRecord("get", name, self.now())
        request.notifyFinish().addCallbacks(
            lambda _: self.recordGet(request, record, OK),
            lambda f: self.recordGet(request, record, "interrupted"),
        )
        sender = static.File(path.path, defaultType="application/octet-stream")
        sender.contentTypes = {}
        sender.contentEncodings = {}
        result: bytes | int = sender.render(request)
        return result

    render_HEAD = render_GET

    def now(self) -> float:
        """The reactor's time."""
        return float(self.factory.reactor.seconds())

    def recordGet(self, request: Request, record: TransferRecord, outcome: str) -> None:
        """Log and count a download as the protocol's are."""
        sent = getattr(request, "sentLength", 0)
        if request.method == b"HEAD":
            return
        recordTransfer(
            self.log, self.factory.metrics, peerOf(request), record, sent, self.now(), outcome
        )

    def render_DELETE(self, request: Request) -> bytes:
        """Remove a file, a link, or a directory empty but for abandoned partials."""
        session = self.sessions.authorised(request)
        if session is None:
            return jsonError(request, http.FORBIDDEN, FORGED)
        try:
            checkPermission(self.factory, session.user, "delete")
            name = self.name(request)
            record = TransferRecord("delete", name, self.now())
            deletePath(self.factory.root, name)
        except FileServiceError as e:
            return jsonError(request, statusOf(e), e.message)
        recordTransfer(self.log, self.factory.metrics, peerOf(request), record, 0, self.now(), OK)
        return jsonResponse(request, {"ok": True})


class UploadResource(FilesResource):
    """
    C{/api/upload/NAME}: C{GET ?size=N} says where an upload would resume;
    C{PUT} is answered once L{FilesSite} has streamed its body to disk.
    """

    def render_GET(self, request: Request) -> bytes:
        """The resume offset for an upload of this name and size."""
        try:
            checkPermission(self.factory, self.user(request), "put")
            size = int((request.args or {}).get(b"size", [b""])[0])
            if size < 0:
                raise ValueError
            self.factory.checkUploadSize(size)
            return jsonResponse(request, resumeOffset(self.factory, self.name(request), size))
        except ValueError:
            return jsonError(request, http.BAD_REQUEST, "say ?size=BYTES")
        except FileServiceError as e:
            return jsonError(request, statusOf(e), e.message)

    def render_PUT(self, request: Request) -> bytes | int:
        """Store what was streamed, and answer with its size and SHA-256."""
        sink = getattr(request, "upload", None)
        if not isinstance(sink, UploadSink):
            return jsonError(request, http.BAD_REQUEST, "no upload")
        return self.answer(request, lambda: sink.ready.addCallback(lambda _: sink.complete()))


class FilesSite(WebSite):
    """The files page's site: streams upload bodies into L{UploadSink}s."""

    def __init__(self, factory: FileServerFactory, sessions: SessionStore | None = None) -> None:
        sessions = sessions if sessions is not None else SessionStore()
        api = Resource()
        shared = (factory, sessions)
        apis = Resource()
        apis.putChild(b"session", SessionResource(*shared))
        apis.putChild(b"login", LoginResource(*shared))
        apis.putChild(b"logout", LoginResource(*shared))
        apis.putChild(b"list", ListResource(*shared))
        apis.putChild(b"upload", UploadResource(*shared))
        api.putChild(b"api", apis)
        api.putChild(b"files", FileResource(*shared))
        root = PageRoot("files.html", ["files.js", "style.css"], api)
        super().__init__(root, sessions)
        self.factory = factory

    def bodySink(
        self, request: WebRequest, command: bytes, path: bytes, length: int | None
    ) -> BodySink | None:
        """An upload's body goes to disk as it comes; anything else, to memory."""
        if command != b"PUT" or not path.startswith(UPLOAD_PREFIX):
            return None
        session = self.store.authorised(request)
        if session is None:
            raise Refused(http.FORBIDDEN, FORGED)
        if length is None:
            raise Refused(http.LENGTH_REQUIRED, "an upload needs a Content-Length")
        try:
            args = http.parse_qs(path.split(b"?", 1)[1]) if b"?" in path else {}
            size, start = uploadRange(args, request.getHeader(b"content-range"), length)
            # An HTTP channel's transport is a TCP (or TLS) connection.
            transport = cast(ConnectionTransport, request.channel.transport)
            sink = UploadSink(
                self.factory,
                transport,
                peerOf(request),
                session.user,
                nameFromRawPath(path, UPLOAD_PREFIX),
                size,
                start,
                args.get(b"overwrite", [b""])[0] in (b"1", b"true", b"yes"),
            )
        except OffsetMismatch as e:
            raise Refused(http.CONFLICT, e.message, offset=e.offset) from None
        except FileServiceError as e:
            raise Refused(statusOf(e), e.message) from None
        request.upload = sink  # type: ignore[attr-defined]
        return sink
