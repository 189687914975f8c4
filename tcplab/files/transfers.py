"""
The part of a file session that moves files: its shared state, its error
replies, and the get and put requests, without sockets.

A session answers through a L{FileChannel} (the protocol adapter in
L{tcplab.files.server}).  Downloads send exactly the size announced in their
header and hash exactly those bytes; uploads write to a locked partial
(L{tcplab.files.storage.Upload}); hashing the part a resume already has runs
off the reactor thread, and no request is taken meanwhile.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, BinaryIO, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from tcplab.files import wire
from tcplab.files.errors import (
    BadRequest,
    Busy,
    FileServiceError,
    NotAllowed,
    StorageFailure,
    wireError,
)
from tcplab.files.listing import PagedListing
from tcplab.files.pieces import FrameItem
from tcplab.files.records import (
    FAILED,
    INTERRUPTED,
    OK,
    TransferRecord,
    countRefused,
    recordTransfer,
)
from tcplab.files.storage import Cancellation, Cancelled, Hasher, Upload, hashDescriptorPrefix
from tcplab.files.stream import FrameSender
from tcplab.transports import ConnectionTransport

T = TypeVar("T")

if TYPE_CHECKING:
    from tcplab.files.server import FileServerFactory


def cleanUpAfter(factory: FileServerFactory, upload: Upload) -> None:
    """Have C{factory}'s blocking work remove C{upload}'s stale partials; log a failure."""
    try:
        d = factory.work.run(upload.removeStalePartials)
    except Busy:
        return  # the expiry sweep will do it
    d.addErrback(lambda f: TransferSession.log.failure("removing stale partials failed", f))


class FileChannel(Protocol):
    """What a session needs from its connection."""

    transport: ConnectionTransport

    def sendMessage(self, message: Mapping[str, object]) -> None:
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


class TransferSession:
    """
    The state every request of a session shares, and the requests that move
    files: get and put (L{FileSession} adds the others).

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
        self.listing: PagedListing | None = None

    @property
    def ready(self) -> bool:
        """Whether the next frame may be taken now."""
        return self.waiting is None and not self.closed

    def now(self) -> float:
        """The reactor's time, for durations."""
        return float(self.factory.reactor.seconds())

    def wait(self, op: str, job: Callable[[], T]) -> Deferred[T]:
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
        header: wire.DownloadStart = {
            "ok": True,
            "size": size,
            "offset": request.offset,
            "mtime": int(info.st_mtime),
        }
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
            countRefused(self.factory.metrics, "get")
            self.requestDone()

        d.addCallbacks(lambda hasher: self.sendFile(file, header, record, hasher), failed)

    def sendFile(
        self, file: BinaryIO, header: wire.DownloadStart, record: TransferRecord, hasher: Hasher
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
        assert sender.hasher is not None  # sendFile always gives the sender a hasher
        self.channel.sendMessage({"ok": True, "done": True, "sha256": sender.hasher.hexdigest()})
        self.recordTransfer(record, sender.sent, OK)
        self.requestDone()

    # put

    def startUpload(self, request: wire.Request) -> None:
        """Check the size and the name, lock the partial, tell the offset."""
        upload = self.factory.openUpload(
            request.path, request.size, request.overwrite, request.resume
        )
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
            countRefused(self.factory.metrics, "put")
            self.fail(self.unexpected(failure, "cannot read the partial upload"))
            self.requestDone()

        d.addCallbacks(hashed, failed)

    def uploadFrame(self, payload: FrameItem) -> None:
        """Data for the upload in progress (a piece of a data frame), or its closing digest."""
        upload, record = self.upload, self.transfer
        assert upload is not None and record is not None
        if isinstance(payload, memoryview):
            upload.write(payload)
            return
        if not upload.complete:
            raise BadRequest(f"upload ended after {upload.received} of {upload.size} bytes")
        digest = wire.parseDigest(payload)
        self.upload = self.transfer = None
        self.factory.uploadEnded()
        try:
            upload.finish(digest)
        except FileServiceError as e:
            self.recordTransfer(record, upload.received - upload.offset, FAILED, wireError(e).code)
            raise
        self.recordTransfer(record, upload.received - upload.offset, OK)
        self.cleanUpAfter(upload)
        self.channel.sendMessage({"ok": True, "done": True, "size": upload.size, "sha256": digest})
        if self.stopping:
            self.channel.closeConnection()

    def cleanUpAfter(self, upload: Upload) -> None:
        """Remove the name's stale partials off the reactor thread (skipped when busy)."""
        cleanUpAfter(self.factory, upload)

    def releaseUpload(self, keep: bool) -> Upload | None:
        """Drop the upload in progress (keeping its partial or not); return it."""
        upload, self.upload = self.upload, None
        if upload is not None:
            upload.abort(keep=keep)
            self.factory.uploadEnded()
        return upload

    def unexpected(self, failure: Failure, what: str) -> FileServiceError:
        """The domain error for a failed job (logged when it is a surprise)."""
        error = failure.value
        if isinstance(error, FileServiceError):
            return error
        if not isinstance(error, OSError):
            self.log.failure("{peer}: {what}", failure, peer=self.peer, what=what)
        return StorageFailure(what)

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

    def uploadInterrupted(self) -> None:
        """The connection went during an upload: keep the partial, log it."""
        record = self.transfer
        upload = self.releaseUpload(keep=True)
        if upload is not None and record is not None:
            self.transfer = None
            self.recordTransfer(
                record, upload.received - upload.offset, INTERRUPTED, "partial kept"
            )
