"""
The socket tutorials' own file protocols, served with every guarantee of
the real file service (``tcplab-files --tutorial-listen ENDPOINT``).

Two tutorial programs talk to this listener; each connection says which by
its first bytes:

 - B{the downloader} (seed 000) sends a bare file name in one C{send} and
   reads until the server closes.  It gets the file's bytes -- exactly its
   length when opened -- then the close; a refused name (missing, outside
   the root, a directory) gets the close alone, so the tutorial saves
   nothing.
 - B{the uploader} (seed 003) sends, for each file, C{struct.pack('i',
   len(header))} (4 bytes, native byte order), a JSON header with
   C{file_name} and C{file_size}, then exactly C{file_size} raw bytes; several
   files may follow on one connection, and nothing is ever answered.

The uploader's first 4 bytes always hold a NUL byte (any header shorter than
16 MiB has one, in either byte order) and a file name never does: that tells
them apart.  Uploads go through the real storage (hidden partial, exclusive
lock, atomic rename, replacing an existing file as the tutorial's C{open(...,
'wb')} does); the name is an untrusted path confined to the root; the size is
checked against C{--max-size} from the header, before a byte is stored.  The
protocol has no way to say why something was refused, so a refusal closes
the connection, and the reason goes to the server's log.
"""

from __future__ import annotations

import os
import struct

from twisted.internet.interfaces import IAddress, IDelayedCall, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.addresses import describeAddress
from tcplab.files import wire
from tcplab.files.errors import BadRequest, FileServiceError
from tcplab.files.records import (
    FAILED,
    INTERRUPTED,
    OK,
    TransferRecord,
    countRefused,
    recordTransfer,
)
from tcplab.files.server import FileServerFactory
from tcplab.files.session import checkPermission
from tcplab.files.storage import Upload
from tcplab.files.stream import FrameSender
from tcplab.files.transfers import cleanUpAfter
from tcplab.interfaces import IGracefulStop, IMessageProgress, IRefusalFormat
from tcplab.transports import ConnectionTransport

HEADER_LENGTH = struct.Struct("=i")
"""The uploader's C{struct.pack('i', ...)}: 4 bytes, native byte order."""

MAX_NAME = 4096
"""The longest file name (in bytes) a downloader may send."""

NAME_SETTLE = 0.2
"""Seconds to wait for more bytes when a connection opened with only 1 or 2."""


def _raw(chunk: bytes) -> bytes:
    return chunk


@implementer(IMessageProgress, IGracefulStop, IHalfCloseableProtocol)
class TutorialProtocol(Protocol):
    """One connection from a tutorial downloader or uploader."""

    log = Logger()
    factory: TutorialFactory
    transport: ConnectionTransport  # type: ignore[assignment]

    def connectionMade(self) -> None:
        """Nothing is known about the peer until its first bytes."""
        self.peer = describeAddress(self.transport.getPeer())
        self.buffer = bytearray()
        self.mode = "detecting"
        self.headerLength = 0
        self.headersTaken = 0
        self.upload: Upload | None = None
        self.sender: FrameSender | None = None
        self.record: TransferRecord | None = None
        self.settle: IDelayedCall | None = None
        self.stopping = False

    @property
    def files(self) -> FileServerFactory:
        """The file service whose root, policy and metrics this listener shares."""
        return self.factory.files

    def dataReceived(self, data: bytes) -> None:
        """Detect the tutorial program, then feed its protocol."""
        if self.mode in ("downloading", "closed"):
            return  # the downloader sends nothing after its name
        self.buffer += data
        if self.mode == "detecting":
            if b"\0" in self.buffer[:4]:
                self.mode = "header-length"
            elif len(self.buffer) >= 3:
                self.startDownload()
                return
            else:
                if self.settle is None:
                    self.settle = self.factory.reactor.callLater(NAME_SETTLE, self.startDownload)
                return
        try:
            self.takeUploads()
        except FileServiceError as e:
            self.refuse(e)

    # The downloader

    def startDownload(self) -> None:
        """The bytes so far are a file name: send that file, then close."""
        if self.settle is not None and self.settle.active():
            self.settle.cancel()
        self.settle = None
        self.mode = "downloading"
        raw = bytes(self.buffer).rstrip(b"\r\n")
        self.buffer = bytearray()
        self.record = TransferRecord("get", raw.decode("utf-8", "replace"), self.now())
        try:
            if len(raw) > MAX_NAME:
                raise BadRequest(f"a file name of {len(raw)} bytes")
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("the file name is not UTF-8") from None
            checkPermission(self.files, None, "get")
            path = self.files.root.existing(name)
            if not path.isfile():
                raise BadRequest(f"{name!r} is not a file")
            try:
                file = open(path.path, "rb")  # noqa: SIM115 (closed by FrameSender)
            except OSError as e:
                raise BadRequest(f"cannot read: {e.strerror}") from None
        except FileServiceError as e:
            self.refuse(e)
            return
        size = os.fstat(file.fileno()).st_size
        self.sender = FrameSender(
            file, self.transport, None, self.downloadFinished, limit=size, transform=_raw
        )
        self.sender.start()

    def downloadFinished(self, failure: Failure | None) -> None:
        """All announced bytes sent (or the connection went): close and log."""
        sender, self.sender = self.sender, None
        assert sender is not None and self.record is not None
        if failure is None and sender.sent == sender.limit:
            self.recordTransfer(self.record, sender.sent, OK)
        elif failure is not None and failure.check(ConnectionError):
            self.recordTransfer(self.record, sender.sent, INTERRUPTED)
        else:
            why = failure.getErrorMessage() if failure is not None else "the file shrank"
            self.recordTransfer(self.record, sender.sent, FAILED, why)
        self.mode = "closed"
        self.transport.loseConnection()

    # The uploader

    def takeUploads(self) -> None:
        """Take headers and data from the buffer, one file after another."""
        while True:
            if self.mode == "header-length":
                if len(self.buffer) < HEADER_LENGTH.size:
                    return
                (self.headerLength,) = HEADER_LENGTH.unpack_from(self.buffer)
                del self.buffer[: HEADER_LENGTH.size]
                if not 0 < self.headerLength <= wire.MAX_CONTROL:
                    raise BadRequest(f"a header of {self.headerLength} bytes")
                self.mode = "header"
            if self.mode == "header":
                if len(self.buffer) < self.headerLength:
                    return
                header = bytes(self.buffer[: self.headerLength])
                del self.buffer[: self.headerLength]
                self.headersTaken += 1
                self.startUpload(header)
                self.mode = "data"
            if self.mode == "data":
                upload = self.upload
                assert upload is not None
                take = min(upload.size - upload.received, len(self.buffer))
                if take:
                    upload.write(bytes(self.buffer[:take]))
                    del self.buffer[:take]
                if not upload.complete:
                    return
                self.finishUpload()
                self.mode = "header-length"
            else:
                return

    def startUpload(self, header: bytes) -> None:
        """Check a header like a real put: permission, size, name, lock."""
        try:
            message = wire.decode(header)
            name = wire.field(message, "file_name", str)
            size = wire.field(message, "file_size", int)
        except wire.ProtocolError as e:
            raise BadRequest(f"bad header: {e.message}") from None
        self.record = TransferRecord("put", name, self.now())
        checkPermission(self.files, None, "put")
        # The tutorial's server opens the name with "wb": a new upload replaces.
        self.upload = self.files.openUpload(name, size, overwrite=True, resume=False)

    def finishUpload(self) -> None:
        """All declared bytes are in: move the file into place and log it."""
        upload, record = self.upload, self.record
        assert upload is not None and record is not None
        self.upload = self.record = None
        self.files.uploadEnded()
        try:
            upload.finish(None)
        except FileServiceError as e:
            self.recordTransfer(record, upload.received, FAILED, e.message)
            raise
        self.recordTransfer(record, upload.received, OK)
        cleanUpAfter(self.files, upload)
        if self.stopping:
            self.transport.loseConnection()

    # Endings

    def refuse(self, error: FileServiceError) -> None:
        """The tutorial protocols cannot say why: log the reason and close."""
        self.log.info(
            "{peer}: tutorial {mode}: refused: {reason}",
            peer=self.peer,
            mode="download" if self.mode == "downloading" else "upload",
            reason=error.message,
        )
        record, upload = self.record, self.upload
        self.record = self.upload = None
        if upload is not None:
            upload.abort(keep=False)
            self.files.uploadEnded()
            if record is not None:
                self.recordTransfer(record, upload.received, FAILED, error.message)
        elif record is not None:
            countRefused(self.files.metrics, record.op)
        self.mode = "closed"
        self.buffer = bytearray()
        self.transport.loseConnection()

    def recordTransfer(
        self, record: TransferRecord, count: int, outcome: str, detail: str = ""
    ) -> None:
        """Log and count a transfer, as the file service does."""
        recordTransfer(
            self.log, self.files.metrics, self.peer, record, count, self.now(), outcome, detail
        )

    def now(self) -> float:
        """The reactor's time."""
        return float(self.factory.reactor.seconds())

    def messageInProgress(self) -> int | None:
        """For the slow-drip timeout: a header (or its length) half-received."""
        if self.mode in ("header-length", "header") and self.buffer:
            return self.headersTaken
        return None

    def readConnectionLost(self) -> None:
        """
        The peer shut down its sending side: a name just sent (as with
        C{printf NAME | nc}) is downloaded; a download runs to its end;
        otherwise the conversation is over.
        """
        if self.mode == "detecting" and self.buffer:
            self.startDownload()
        elif self.mode != "downloading":
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we never half-close."""

    def serverStopping(self) -> None:
        """Shutting down: a file being sent or received may finish."""
        self.stopping = True
        if self.sender is None and self.upload is None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """An upload cut off is removed (the tutorial protocol cannot resume)."""
        if self.settle is not None and self.settle.active():
            self.settle.cancel()
        upload, record = self.upload, self.record
        self.upload = None
        if upload is not None:
            upload.abort(keep=False)
            self.files.uploadEnded()
            if record is not None:
                self.recordTransfer(record, upload.received, INTERRUPTED)


@implementer(IRefusalFormat)
class TutorialFactory(Factory):
    """
    Serve the tutorials' downloader and uploader from the same root, with
    the same policy, locks and metrics as a L{FileServerFactory}.
    """

    noisy = False

    @staticmethod
    def refusal(reason: str) -> bytes:
        """
        Nothing: the tutorial protocols have no way to say why, and a refused
        downloader would save any words as the file's content.  The close
        alone says it; the reason goes to the server's log.
        """
        return b""

    def __init__(self, files: FileServerFactory) -> None:
        self.files = files
        self.reactor = files.reactor

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A new tutorial connection."""
        protocol = TutorialProtocol()
        protocol.factory = self
        return protocol
