"""
One client's session with the file service: request ordering, permissions
and the requests that do not move files, without sockets (get and put are
in L{tcplab.files.transfers}).

A L{FileSession} takes frame payloads and pieces of upload data
(L{FileSession.frameReceived}, fed by a L{tcplab.files.pieces.PieceDecoder}) and
answers through a L{FileChannel} (the protocol adapter in
L{tcplab.files.server}).  It takes one request at a time: while a request is
being answered -- a login being checked, a resume being hashed off the
reactor thread, a listing sent page by page, a download streaming -- it is
not L{ready}, and the channel stops reading.  Domain errors from the root and
the storage become wire errors in one place (L{tcplab.files.errors.wireError}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.python.failure import Failure

from tcplab.auth import LoginFailed
from tcplab.files import wire
from tcplab.files.errors import (
    AuthFailed,
    AuthRequired,
    BadRequest,
    FileServiceError,
    NotAllowed,
    StorageFailure,
)
from tcplab.files.listing import PagedListing, describe, describeEach, readNames
from tcplab.files.pieces import FrameItem
from tcplab.files.records import OK, TRANSFER_OPS, TransferRecord, countRefused
from tcplab.files.storage import deletePath
from tcplab.files.transfers import TransferSession

if TYPE_CHECKING:
    from tcplab.files.server import FileServerFactory


def checkPermission(factory: FileServerFactory, user: str | None, op: str) -> None:
    """
    Refuse what C{user} (L{None}: anonymous) may not do on this server.

    @raise AuthRequired: a write, or any read with anonymous reads off, needs a login.
    @raise NotAllowed: a write on a read-only server.
    """
    writes = op in ("put", "delete")
    anonymous = factory.authenticator.enabled and user is None
    if anonymous and (writes or not factory.anonymousReads):
        raise AuthRequired(f"log in to {op}")
    if writes and not factory.writable:
        raise NotAllowed("this server is read-only")


class FileSession(TransferSession):
    """
    One connection's session with the file service (docs/protocol.md): it
    takes frames in order and carries out each request -- list, stat, get,
    put, delete, login -- one at a time.
    """

    # Frames in

    def frameReceived(self, payload: FrameItem) -> None:
        """Take one item: upload data (a view), an upload's digest, or a request."""
        try:
            if self.upload is not None:
                self.uploadFrame(payload)
            elif isinstance(payload, memoryview):
                raise BadRequest("data frame outside an upload")
            else:
                self.handleRequest(wire.parseRequest(payload))
        except (FileServiceError, wire.ProtocolError) as e:
            self.fail(e)

    def handleRequest(self, request: wire.Request) -> None:
        """Carry out one request; a refused transfer is counted as refused."""
        if request.op == "login":
            self.login(request)
            return
        try:
            self.checkPermission(request)
            self.carryOut(request)
        except (FileServiceError, wire.ProtocolError):
            if request.op in TRANSFER_OPS:
                countRefused(self.factory.metrics, request.op)
            raise

    def checkPermission(self, request: wire.Request) -> None:
        """Refuse what this user may not do here (anonymous writes, read-only)."""
        checkPermission(self.factory, self.user, request.op)

    def carryOut(self, request: wire.Request) -> None:
        """Carry out one permitted request."""
        if request.op == "list":
            self.startListing(request)
        elif request.op == "stat":
            self.channel.sendMessage(
                {
                    "ok": True,
                    **describe(self.factory.root.existing(request.path), self.factory.root),
                }
            )
        elif request.op == "get":
            self.startDownload(request)
        elif request.op == "put":
            self.startUpload(request)
        elif request.op == "delete":
            self.delete(request)

    # login

    def login(self, request: wire.Request) -> None:
        """Check a user name and password; nothing else is read until the answer."""
        self.waiting = "login"
        d = defer.ensureDeferred(
            self.factory.authenticator.login(request.user, request.password, self.peer)
        )

        def loggedIn(user: str) -> None:
            self.user = user
            if not self.closed:
                self.channel.sendMessage({"ok": True, "user": user})

        def failed(failure: Failure) -> None:
            if failure.check(LoginFailed) is None:
                self.log.failure("login check failed", failure)
            if not self.closed:
                self.fail(AuthFailed("wrong user name or password"))

        d.addCallbacks(loggedIn, failed)
        d.addBoth(lambda _: self.requestDone())

    # list and delete

    def startListing(self, request: wire.Request) -> None:
        """Read the directory's names off the reactor thread, then send them in pages."""
        root = self.factory.root
        path = root.existing(request.path)
        if not path.isdir():
            raise BadRequest(f"{request.path!r} is not a directory")
        d = self.wait("list", lambda: readNames(path))

        def ready(names: list[str]) -> None:
            if not self.closed:
                pages = wire.listingPages(describeEach(path, names, root))
                self.listing = PagedListing(
                    pages, self.channel, self.factory.reactor, self.listingDone
                )
                self.listing.sendNext()

        def failed(failure: Failure) -> None:
            if self.closed:
                return
            error = failure.value
            if isinstance(error, OSError):
                error = NotAllowed(f"cannot list {request.path!r}: {error.strerror}")
            elif not isinstance(error, FileServiceError):
                self.log.failure("listing failed", failure)
                error = StorageFailure("cannot list the directory")
            self.fail(error)
            self.requestDone()

        d.addCallbacks(ready, failed)

    def listingDone(self) -> None:
        """The last page is sent."""
        self.listing = None
        self.requestDone()

    def outputResumed(self) -> None:
        """The client reads again: carry on with a listing that waited for it."""
        if self.listing is not None:
            self.listing.resume()

    def delete(self, request: wire.Request) -> None:
        """Remove a file or a link, or a directory empty but for abandoned partials."""
        record = TransferRecord("delete", request.path, self.now())
        deletePath(self.factory.root, request.path)
        self.recordTransfer(record, 0, OK)
        self.channel.sendMessage({"ok": True})

    # Replies and endings

    def serverStopping(self) -> None:
        """Shutting down: let a running transfer finish; otherwise close now."""
        self.stopping = True
        if self.upload is None and self.sender is None:
            self.channel.closeConnection()

    def connectionLost(self) -> None:
        """Stop what runs for this connection; keep an interrupted upload's partial."""
        self.closed = True
        if self.listing is not None:
            self.listing.stop()
            self.listing = None
        if self._cancellation is not None:
            # A thread is reading the partial (or the file): it is released
            # when that job ends, never closed under it.
            self._cancellation.cancel()
            return
        self.uploadInterrupted()
