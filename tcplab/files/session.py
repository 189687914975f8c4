"""
One client's session with the file service: request ordering, permissions
and transfers, without sockets.

A L{FileSession} takes frame payloads (L{FileSession.frameReceived}) and
answers through a L{FileChannel} (the protocol adapter in
L{tcplab.files.server}).  It takes one request at a time: while a request is
being answered -- a login being checked, a resume being hashed off the
reactor thread, a listing sent page by page, a download streaming -- it is
not L{ready}, and the channel stops reading.  Domain errors from the root and
the storage become wire errors in one place (L{tcplab.files.errors.wireError}).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from tcplab.auth import LoginFailed
from tcplab.files import wire
from tcplab.files.errors import (
    AuthFailed,
    AuthRequired,
    BadRequest,
    Busy,
    FileServiceError,
    NotAllowed,
    StorageFailure,
    TooLarge,
    wireError,
)
from tcplab.files.storage import (
    Cancellation,
    Cancelled,
    Upload,
    describe,
    describeEach,
    hashDescriptorPrefix,
    readNames,
    removeDirectory,
)
from tcplab.files.stream import FrameSender
from tcplab.metrics import Metrics

if TYPE_CHECKING:
    from tcplab.files.server import FileServerFactory

OK = "ok"
FAILED = "failed"
REFUSED = "refused"
INTERRUPTED = "interrupted"
OUTCOMES = (OK, FAILED, REFUSED, INTERRUPTED)
"""The C{outcome} labels of C{tcplab_file_transfers_total} (README, *Files*)."""


class FileChannel(Protocol):
    """What a session needs from its connection."""

    transport: Any

    def sendMessage(self, message: dict[str, Any]) -> None:
        """Send one control message."""

    def canSend(self) -> bool:
        """Whether the transport's buffer has room (no backpressure)."""

    def beginStream(self) -> None:
        """A L{FrameSender} is about to register itself with the transport."""

    def endStream(self) -> None:
        """The L{FrameSender} is done; back to request/reply."""

    def resumeRequests(self) -> None:
        """The session is ready for the next request: read on."""

    def closeConnection(self) -> None:
        """Close, after what was written so far."""


@dataclass
class TransferRecord:
    """One transfer in progress: what, where, since when (for its log line and metrics)."""

    op: str
    path: str
    started: float


def recordTransfer(
    log: Logger,
    metrics: Metrics,
    peer: str,
    record: TransferRecord,
    count: int,
    now: float,
    outcome: str,
    detail: str = "",
) -> None:
    """Log one transfer with its figures, and count it by outcome in the metrics."""
    duration = max(now - record.started, 0.0)
    rate = count / duration / 1e6 if duration > 0 else 0.0
    log.info(
        "{peer} {op} {path!r}: {outcome}{detail}, {count} bytes in {duration:.3f}s"
        " ({rate:.1f} MB/s)",
        peer=peer,
        op=record.op,
        path=record.path,
        outcome=outcome,
        detail=f" ({detail})" if detail else "",
        count=count,
        duration=duration,
        rate=rate,
    )
    metrics.increment("tcplab_file_transfers_total", op=record.op, outcome=outcome)
    metrics.increment("tcplab_file_transfer_bytes_total", count, op=record.op)


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


TRANSFER_OPS = ("get", "put", "delete")
"""The operations counted in C{tcplab_file_transfers_total}."""


class FileSession:
    """
    The state of one connection to the file service (docs/protocol.md).

    @ivar user: the logged-in user, or L{None}.
    @ivar waiting: the operation being answered asynchronously (no request
        is taken meanwhile), or L{None}.
    @ivar upload: the upload receiving data frames, if any.
    @ivar transfer: the transfer in progress, if any.
    """

    log = Logger()

    def __init__(self, factory: FileServerFactory, channel: FileChannel, peer: str) -> None:
        self.factory = factory
        self.channel = channel
        self.peer = peer
        self.user: str | None = None
        self.waiting: str | None = None
        self.upload: Upload | None = None
        self.sender: FrameSender | None = None
        self.transfer: TransferRecord | None = None
        self.stopping = False
        self.closed = False
        self._cancellation: Cancellation | None = None
        self._pages: Iterator[dict[str, Any]] | None = None
        self._nextPage: IDelayedCall | None = None

    @property
    def ready(self) -> bool:
        """Whether the next frame may be taken now."""
        return self.waiting is None and not self.closed

    def now(self) -> float:
        """The reactor's time, for durations."""
        return float(self.factory.reactor.seconds())

    # Frames in

    def frameReceived(self, payload: bytes) -> None:
        """Take one frame: upload data, an upload's digest, or a request."""
        try:
            if self.upload is not None:
                self.uploadFrame(payload)
            elif payload[:1] == wire.DATA:
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
                self.factory.metrics.increment(
                    "tcplab_file_transfers_total", op=request.op, outcome=REFUSED
                )
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

    def wait(self, op: str, job: Callable[[], Any]) -> Any:
        """
        Run a blocking job off the reactor thread; until it is answered, no
        request is taken.  The job's Deferred is returned.
        """
        deferred = self.factory.work.run(job)
        self.waiting = op
        return deferred

    def requestDone(self) -> None:
        """The current request is answered: take the next, or close when stopping."""
        self.waiting = None
        if self.closed:
            return
        if self.stopping and self.upload is None:
            self.channel.closeConnection()
        else:
            self.channel.resumeRequests()

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
                self._pages = wire.listingPages(describeEach(path, names, root))
                self.sendPages()

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

    def sendPages(self) -> None:
        """Send the next page of a listing, one per reactor turn, while the client reads."""
        self._nextPage = None
        if self._pages is None or self.closed or not self.channel.canSend():
            return
        page = next(self._pages)
        self.channel.sendMessage(page)
        if page["more"]:
            self._nextPage = self.factory.reactor.callLater(0, self.sendPages)
        else:
            self._pages = None
            self.requestDone()

    def outputResumed(self) -> None:
        """The client reads again: carry on with a listing that waited for it."""
        if self._pages is not None and self._nextPage is None:
            self.sendPages()

    def delete(self, request: wire.Request) -> None:
        """Remove a file or a link, or a directory empty but for abandoned partials."""
        path = self.factory.root.existing(request.path)
        if path == self.factory.root.path:
            raise NotAllowed("the root cannot be deleted")
        record = TransferRecord("delete", request.path, self.now())
        if path.isdir() and not path.islink():
            removeDirectory(path.path)
        else:
            try:
                os.unlink(path.path)
            except OSError as e:
                raise NotAllowed(f"cannot delete: {e.strerror}") from None
        self.recordTransfer(record, 0, OK)
        self.channel.sendMessage({"ok": True})

    # get

    def startDownload(self, request: wire.Request) -> None:
        """
        Send the header, then exactly the size announced there (the file's
        length when it was opened), then the SHA-256 of those bytes.
        """
        path = self.factory.root.existing(request.path)
        if not path.isfile():
            raise BadRequest(f"{request.path!r} is not a file")
        try:
            file = open(path.path, "rb")  # noqa: SIM115 (closed by FrameSender)
        except OSError as e:
            raise NotAllowed(f"cannot read: {e.strerror}") from None
        info = os.fstat(file.fileno())
        size = info.st_size
        if request.offset > size:
            file.close()
            raise BadRequest(f"offset {request.offset} is past the end ({size} bytes)")
        record = TransferRecord("get", request.path, self.now())
        header = {"ok": True, "size": size, "offset": request.offset, "mtime": int(info.st_mtime)}
        if not request.offset:
            self.waiting = "get"
            self.sendFile(file, header, record, hashlib.sha256())
            return
        # The digest covers the whole file, also when resuming: hash the
        # part the client has off the reactor thread.
        cancellation = self._cancellation = Cancellation()
        fd = file.fileno()
        try:
            d = self.wait("get", lambda: hashDescriptorPrefix(fd, request.offset, cancellation))
        except Busy:
            file.close()
            raise

        def failed(failure: Failure) -> None:
            file.close()
            if self.closed or failure.check(Cancelled):
                return
            self.fail(self.unexpected(failure, "cannot read the file"))
            self.metricsRefused("get")
            self.requestDone()

        d.addCallbacks(lambda hasher: self.sendFile(file, header, record, hasher), failed)

    def sendFile(
        self, file: Any, header: dict[str, Any], record: TransferRecord, hasher: Any
    ) -> None:
        """Send the header and stream the file from the offset to the announced size."""
        self._cancellation = None
        if self.closed:
            file.close()
            return
        file.seek(header["offset"])
        self.channel.sendMessage(header)
        self.transfer = record
        self.channel.beginStream()
        self.sender = FrameSender(
            file,
            self.channel.transport,
            hasher,
            self.downloadFinished,
            limit=header["size"] - header["offset"],
        )
        self.sender.start()

    def downloadFinished(self, failure: Failure | None) -> None:
        """Send the trailer, or say why the download stopped."""
        sender, self.sender = self.sender, None
        record, self.transfer = self.transfer, None
        assert sender is not None and record is not None
        if not self.closed:
            self.channel.endStream()
        if failure is None and sender.sent != sender.limit:
            failure = Failure(StorageFailure("the file shrank while it was being sent"))
        if failure is not None:
            interrupted = self.closed or failure.check(ConnectionError) is not None
            self.recordTransfer(
                record,
                sender.sent,
                INTERRUPTED if interrupted else FAILED,
                failure.getErrorMessage(),
            )
            if not interrupted:
                self.fail(StorageFailure(f"read error: {failure.getErrorMessage()}"), close=True)
            return
        self.channel.sendMessage({"ok": True, "done": True, "sha256": sender.hasher.hexdigest()})
        self.recordTransfer(record, sender.sent, OK)
        self.requestDone()

    # put

    def startUpload(self, request: wire.Request) -> None:
        """Check the size and the name, lock the partial, tell the offset."""
        factory = self.factory
        if factory.maxSize is not None and request.size > factory.maxSize:
            raise TooLarge(f"{request.size} bytes is over the server's limit of {factory.maxSize}")
        target = factory.root.resolve(request.path)
        if target == factory.root.path or not request.path.strip("/"):
            raise BadRequest("put needs a file name")
        if factory.uploadsInProgress >= factory.maxUploads:
            raise Busy(f"the server holds {factory.maxUploads} uploads already; try again later")
        upload = Upload(target, request.size, request.overwrite, request.resume)
        factory.uploadsInProgress += 1
        self.upload = upload
        self.transfer = TransferRecord("put", request.path, self.now())
        if upload.hasher is not None:
            self.channel.sendMessage({"ok": True, "offset": upload.offset})
            return
        cancellation = self._cancellation = Cancellation()
        try:
            d = self.wait("put", lambda: upload.hashExisting(cancellation))
        except Busy:
            self.releaseUpload(keep=True)
            raise

        def hashed(_: None) -> None:
            self._cancellation = None
            if self.closed:
                self.uploadInterrupted()
                return
            self.channel.sendMessage({"ok": True, "offset": upload.offset})
            self.requestDone()

        def failed(failure: Failure) -> None:
            self._cancellation = None
            if self.closed or failure.check(Cancelled):
                self.uploadInterrupted()
                return
            self.releaseUpload(keep=True)
            self.transfer = None
            self.metricsRefused("put")
            self.fail(self.unexpected(failure, "cannot read the partial upload"))
            self.requestDone()

        d.addCallbacks(hashed, failed)

    def uploadFrame(self, payload: bytes) -> None:
        """Data for the upload in progress, or its closing digest."""
        upload, record = self.upload, self.transfer
        assert upload is not None and record is not None
        if payload[:1] == wire.DATA:
            upload.write(payload[1:])
            return
        if not upload.complete:
            raise BadRequest(f"upload ended after {upload.received} of {upload.size} bytes")
        digest = wire.parseDigest(payload)
        self.upload = self.transfer = None
        self.factory.uploadsInProgress -= 1
        try:
            upload.finish(digest)
        except FileServiceError as e:
            self.recordTransfer(record, upload.received - upload.offset, FAILED, wireError(e).code)
            raise
        self.recordTransfer(record, upload.received - upload.offset, OK)
        self.channel.sendMessage({"ok": True, "done": True, "size": upload.size, "sha256": digest})
        if self.stopping:
            self.channel.closeConnection()

    def releaseUpload(self, keep: bool) -> Upload | None:
        """Drop the upload in progress (keeping its partial or not); return it."""
        upload, self.upload = self.upload, None
        if upload is not None:
            upload.abort(keep=keep)
            self.factory.uploadsInProgress -= 1
        return upload

    # Replies and endings

    def unexpected(self, failure: Failure, what: str) -> FileServiceError:
        """The domain error for a failed job (logged when it is a surprise)."""
        error = failure.value
        if isinstance(error, FileServiceError):
            return error
        if not isinstance(error, OSError):
            self.log.failure("{peer}: {what}", failure, peer=self.peer, what=what)
        return StorageFailure(what)

    def metricsRefused(self, op: str) -> None:
        """Count a transfer refused before a byte moved."""
        self.factory.metrics.increment("tcplab_file_transfers_total", op=op, outcome=REFUSED)

    def fail(self, error: FileServiceError | wire.ProtocolError, close: bool = False) -> None:
        """
        Send an error.  During an upload the connection is closed too (the
        frames still in flight could not be told apart from what follows);
        a failed upload's partial is kept unless the failure was the data's.
        """
        problem = wireError(error)
        self.log.info(
            "{peer}: error {code}: {message}",
            peer=self.peer,
            code=problem.code,
            message=problem.message,
        )
        self.channel.sendMessage(wire.errorMessage(problem.code, problem.message))
        record = self.transfer
        upload = self.releaseUpload(
            keep=problem.code not in (wire.NO_SPACE, wire.CHECKSUM_MISMATCH)
        )
        if upload is not None and record is not None:
            self.transfer = None
            self.recordTransfer(record, upload.received - upload.offset, FAILED, problem.code)
            close = True
        if close:
            self.closed = True
            self.channel.closeConnection()

    def recordTransfer(
        self, record: TransferRecord, count: int, outcome: str, detail: str = ""
    ) -> None:
        """Log and count one transfer."""
        recordTransfer(
            self.log, self.factory.metrics, self.peer, record, count, self.now(), outcome, detail
        )

    def serverStopping(self) -> None:
        """Shutting down: let a running transfer finish; otherwise close now."""
        self.stopping = True
        if self.upload is None and self.sender is None:
            self.channel.closeConnection()

    def connectionLost(self) -> None:
        """Stop what runs for this connection; keep an interrupted upload's partial."""
        self.closed = True
        if self._nextPage is not None and self._nextPage.active():
            self._nextPage.cancel()
        self._pages = None
        if self._cancellation is not None:
            # A thread is reading the partial (or the file): it is released
            # when that job ends, never closed under it.
            self._cancellation.cancel()
            return
        self.uploadInterrupted()

    def uploadInterrupted(self) -> None:
        """The connection went during an upload: keep the partial, log it."""
        record = self.transfer
        upload = self.releaseUpload(keep=True)
        if upload is not None and record is not None:
            self.transfer = None
            self.recordTransfer(
                record, upload.received - upload.offset, INTERRUPTED, "partial kept"
            )
