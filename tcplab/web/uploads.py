"""
Uploads from the files page, streamed to disk through the file service's
own storage.

An upload is C{PUT /api/upload/NAME?size=TOTAL&offset=START} (or a
C{Content-Range: bytes START-END/TOTAL} header, as C{curl} sends) with the
session's token header.  Before a byte of its body is read, L{UploadSink}
checks what the Int32 protocol's put checks -- permission, C{--max-size},
the name, the upload limit -- and opens a L{tcplab.files.storage.Upload}:
hidden partial, exclusive lock, overwrite guard.  The body is then written
into the partial as it arrives (never held in memory); once all C{TOTAL}
bytes are there, the partial is renamed atomically into place and the
SHA-256 of what was stored is the answer.  A body that ends early (a lost
connection, a tab closed) leaves the partial for a resume: C{GET
/api/upload/NAME?size=TOTAL} tells the offset to send from.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from tcplab.files.errors import BadRequest, Busy, FileServiceError
from tcplab.files.partials import partialName
from tcplab.files.records import FAILED, INTERRUPTED, OK, TransferRecord, recordTransfer
from tcplab.files.session import checkPermission
from tcplab.files.storage import Cancellation, Cancelled, Upload
from tcplab.files.transfers import cleanUpAfter
from tcplab.transports import ConnectionTransport

if TYPE_CHECKING:
    from tcplab.files.server import FileServerFactory

CONTENT_RANGE = re.compile(rb"^bytes (\d+)-(\d+)/(\d+)$")


class OffsetMismatch(FileServiceError):
    """The body would start elsewhere than the partial on disk ends."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"the upload continues at byte {offset}")
        self.offset = offset


def uploadRange(
    args: dict[bytes, list[bytes]], contentRange: bytes | None, length: int | None
) -> tuple[int, int]:
    """
    The total size and the start offset of an upload request.

    @raise BadRequest: they are missing or do not add up with C{length}.
    """
    try:
        if contentRange is not None:
            match = CONTENT_RANGE.match(contentRange.strip())
            if match is None:
                raise ValueError
            start, end, size = (int(g) for g in match.groups())
            if end < start or end >= size or length != end - start + 1:
                raise ValueError
            return size, start
        size = int(args.get(b"size", [b""])[0])
        start = int(args.get(b"offset", [b"0"])[0])
    except ValueError:
        raise BadRequest("an upload needs ?size=BYTES (and &offset=) or a Content-Range") from None
    if size < 0 or not 0 <= start <= size:
        raise BadRequest("the upload's size and offset do not add up")
    if length is None or start + length > size:
        raise BadRequest("the body is longer than the rest of the file")
    return size, start


def resumeOffset(factory: FileServerFactory, name: str, size: int) -> dict[str, object]:
    """
    Where an upload of C{name} (C{size} bytes) would continue: the size of its
    partial when one is there and no longer than C{size}, else 0; and whether
    the name exists already.
    """
    target = factory.root.resolve(name)
    partial = target.sibling(partialName(target.basename(), size))
    try:
        kept = os.stat(partial.path).st_size
    except OSError:
        kept = 0
    return {"ok": True, "offset": kept if kept <= size else 0, "exists": target.exists()}


class UploadSink:
    """
    One upload's body on its way into a partial (see the module docstring).

    @ivar ready: fires once the kept part of a resumed upload is hashed and
        every byte received meanwhile is written.
    """

    log = Logger()

    def __init__(
        self,
        factory: FileServerFactory,
        transport: ConnectionTransport,
        peer: str,
        user: str | None,
        name: str,
        size: int,
        start: int,
        overwrite: bool,
    ) -> None:
        checkPermission(factory, user, "put")
        upload = factory.openUpload(name, size, overwrite, resume=start > 0)
        if upload.offset != start:
            upload.abort(keep=True)
            factory.uploadEnded()
            raise OffsetMismatch(upload.offset)
        self.factory = factory
        self.transport = transport
        self.peer = peer
        self.upload: Upload | None = upload
        self.record = TransferRecord("put", name, self.now())
        self.failure: FileServiceError | None = None
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[bytes] | None = None
        self._cancellation: Cancellation | None = None
        if upload.hasher is not None:
            self.ready.callback(None)
        else:
            self.hashKept(upload)

    def now(self) -> float:
        """The reactor's time."""
        return float(self.factory.reactor.seconds())

    def hashKept(self, upload: Upload) -> None:
        """Hash the kept part off the reactor thread; hold the body meanwhile."""
        cancellation = self._cancellation = Cancellation()
        try:
            d = self.factory.work.run(lambda: upload.hashExisting(cancellation))
        except Busy:
            self.release(keep=True)
            raise
        self._waiting = []
        self.transport.pauseProducing()

        def hashed(_: None) -> None:
            self._cancellation = None
            waiting, self._waiting = self._waiting or [], None
            for data in waiting:
                self.chunk(data)
            if self.upload is not None:
                self.transport.resumeProducing()
            self.ready.callback(None)

        def failed(failure: Failure) -> None:
            self._cancellation = None
            self._waiting = None
            if not failure.check(Cancelled):
                self.log.failure("{peer}: cannot hash a partial upload", failure, peer=self.peer)
            self.fail(BadRequest("cannot read the partial upload"), keep=True)
            self.ready.callback(None)

        d.addCallbacks(hashed, failed)

    def chunk(self, data: bytes) -> None:
        """Write a piece of the body (held while the kept part is hashed)."""
        if self._waiting is not None:
            self._waiting.append(data)
            return
        upload = self.upload
        if upload is None or self.failure is not None:
            return
        try:
            upload.write(data)
        except FileServiceError as e:
            # A full disk removed the partial already; anything else keeps it.
            self.fail(e, keep=True)

    def fail(self, error: FileServiceError, keep: bool) -> None:
        """The upload cannot go on: release it, remember why."""
        self.failure = error
        upload = self.release(keep)
        if upload is not None:
            self.recordTransfer(upload, FAILED, error.message)

    def release(self, keep: bool) -> Upload | None:
        """Drop the upload (keeping the partial or not) and its slot."""
        upload, self.upload = self.upload, None
        if upload is not None:
            upload.abort(keep=keep)
            self.factory.uploadEnded()
        return upload

    def lost(self, reason: Failure) -> None:
        """The connection went mid-body: keep the partial for a resume."""
        if self._cancellation is not None:
            self._cancellation.cancel()
        upload = self.release(keep=True)
        if upload is not None:
            self.recordTransfer(upload, INTERRUPTED, "partial kept")

    def complete(self) -> dict[str, object]:
        """
        The whole body is in: store the file if it is complete, and answer.

        @raise FileServiceError: it failed (the partial is kept unless the
            failure was the data's).
        """
        if self.failure is not None:
            raise self.failure
        upload = self.upload
        if upload is None:
            raise BadRequest("the upload was interrupted; send the rest again")
        if not upload.complete:
            self.release(keep=True)
            self.recordTransfer(upload, INTERRUPTED, "partial kept")
            return {"ok": True, "done": False, "offset": upload.received, "size": upload.size}
        self.upload = None
        self.factory.uploadEnded()
        try:
            digest = upload.finish(None)
        except FileServiceError as e:
            self.recordTransfer(upload, FAILED, e.message)
            raise
        self.recordTransfer(upload, OK)
        cleanUpAfter(self.factory, upload)
        return {"ok": True, "done": True, "size": upload.size, "sha256": digest}

    def recordTransfer(self, upload: Upload, outcome: str, detail: str = "") -> None:
        """Log and count the upload as the protocol's are."""
        recordTransfer(
            self.log,
            self.factory.metrics,
            self.peer,
            self.record,
            upload.received - upload.offset,
            self.now(),
            outcome,
            detail,
        )
