"""
The file service's Twisted side: a thin protocol adapter between a
transport and a L{FileSession}, and the factory holding the server's policy.

L{FileServerProtocol} decodes frames (L{PieceDecoder}: an upload's data as
uncopied views of what was read) and hands them to its session one at a
time.  It reads the next request only when the session is ready for it and
the transport's write buffer has room: it is the transport's push producer
between downloads (paused when the buffer is full), and it pauses the
transport's reading while a request is being answered, so a client that
pipelines requests and never reads holds at most one reply and one read's
worth of input in the server.  Downloads stream with a L{FrameSender},
itself a push producer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.addresses import describeAddress
from tcplab.auth import Authenticator
from tcplab.files import wire
from tcplab.files.errors import BadRequest, Busy, TooLarge
from tcplab.files.partials import sweepAbandonedPartials
from tcplab.files.pieces import PieceDecoder
from tcplab.files.root import SafeRoot
from tcplab.files.session import FileSession
from tcplab.files.storage import Upload
from tcplab.files.work import IBlockingWork, InlineWork, ThreadedWork
from tcplab.interfaces import IGracefulStop, IMessageProgress, IRefusalFormat
from tcplab.metrics import Metrics
from tcplab.reactors import defaultReactor
from tcplab.transports import ConnectionTransport

DEFAULT_PARTIAL_EXPIRY = 24 * 3600.0
"""Seconds an abandoned partial upload is kept for a resume (one day)."""

DEFAULT_MAX_UPLOADS = 256
"""Uploads (running or stalled) a server holds at once before answering C{busy}."""


@implementer(IMessageProgress, IGracefulStop, IPushProducer)
class FileServerProtocol(Protocol):
    """One connection to the file service (docs/protocol.md)."""

    factory: FileServerFactory
    transport: ConnectionTransport  # type: ignore[assignment]

    def connectionMade(self) -> None:
        """Start a session; become the transport's producer until a download starts."""
        self.decoder = PieceDecoder()
        self.session = FileSession(self.factory, self, describeAddress(self.transport.getPeer()))
        self.outputPaused = False
        self.readingPaused = False
        self.streaming = False
        self._taking = False
        self.transport.registerProducer(self, True)

    # Input

    def dataReceived(self, data: bytes) -> None:
        """Buffer the bytes and take whatever requests may be taken now."""
        self.decoder.feed(data)
        self.takeFrames()

    def takeFrames(self) -> None:
        """Hand complete frames to the session while it is ready and output has room."""
        if self._taking:
            return
        self._taking = True
        try:
            while self.session.ready and not self.outputPaused:
                try:
                    payload = self.decoder.next()
                except wire.FrameTooLarge as e:
                    self.session.fail(wire.ProtocolError(wire.TOO_LARGE, str(e)), close=True)
                    return
                if payload is None:
                    break
                self.session.frameReceived(payload)
        finally:
            self._taking = False
        self.updateReading()

    def updateReading(self) -> None:
        """Read from the transport only while a request may be taken."""
        wanted = self.session.ready and not self.outputPaused
        if wanted and self.readingPaused:
            self.readingPaused = False
            self.transport.resumeProducing()
        elif not wanted and not self.readingPaused and not self.session.closed:
            self.readingPaused = True
            self.transport.pauseProducing()

    def messageInProgress(self) -> int | None:
        """
        For the slow-drip timeout: the frame count while the peer owes the
        rest of a frame (not while its next request waits for us).
        """
        if self.decoder.inFrame and self.session.ready:
            return self.decoder.framesDecoded
        return None

    # IPushProducer: the transport's write buffer, between downloads

    def pauseProducing(self) -> None:
        """The write buffer is full: take no request until it drains."""
        self.outputPaused = True
        self.updateReading()

    def resumeProducing(self) -> None:
        """The write buffer drained: carry on (a listing, then requests)."""
        self.outputPaused = False
        self.session.outputResumed()
        self.takeFrames()

    def stopProducing(self) -> None:
        """The connection is going; L{connectionLost} cleans up."""

    # FileChannel, for the session

    def sendMessage(self, message: Mapping[str, object]) -> None:
        """Send a control message."""
        self.transport.write(wire.frame(wire.encode(message)))

    def canSend(self) -> bool:
        """Whether the write buffer has room."""
        return not self.outputPaused and not self.transport.disconnecting

    def beginStream(self) -> None:
        """Hand the transport's producer slot to a download's L{FrameSender}."""
        self.streaming = True
        self.transport.unregisterProducer()

    def endStream(self) -> None:
        """Take the producer slot back after a download."""
        self.streaming = False
        self.outputPaused = False
        if not self.session.closed:
            self.transport.registerProducer(self, True)

    def resumeRequests(self) -> None:
        """The session answered: take the next request (a later turn may be needed)."""
        self.takeFrames()

    def closeConnection(self) -> None:
        """Close after what was written."""
        self.transport.loseConnection()

    # Endings

    def serverStopping(self) -> None:
        """Shutting down: let a running transfer finish; otherwise close now."""
        self.session.serverStopping()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Stop the session's work; an interrupted upload keeps its partial."""
        self.session.connectionLost()


@implementer(IRefusalFormat)
class FileServerFactory(Factory):
    """
    Serve the files under a root.

    @ivar root: the L{SafeRoot} served.
    @ivar writable: whether put and delete are allowed.
    @ivar maxSize: the largest upload accepted, in bytes (L{None}: any).
    @ivar anonymousReads: with logins enabled, whether anonymous users may
        still list, stat and get.
    @ivar work: runs blocking jobs (hashing, reading directories) off the
        reactor thread.
    @ivar partialExpiry: seconds after which a partial upload no connection
        holds is removed (0: never).
    @ivar maxUploads: uploads held at once (each holds a file descriptor and
        a lock until it completes or its connection goes); more get C{busy}.
    @ivar uploadsInProgress: uploads held now.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        root: str | SafeRoot,
        writable: bool = False,
        maxSize: int | None = None,
        authenticator: Authenticator | None = None,
        anonymousReads: bool = True,
        metrics: Metrics | None = None,
        reactor: IReactorTime | None = None,
        work: IBlockingWork | None = None,
        partialExpiry: float = DEFAULT_PARTIAL_EXPIRY,
        maxUploads: int = DEFAULT_MAX_UPLOADS,
    ) -> None:
        self.root = root if isinstance(root, SafeRoot) else SafeRoot(root)
        self.writable = writable
        self.maxSize = maxSize
        self.authenticator = authenticator or Authenticator([])
        self.anonymousReads = anonymousReads
        self.reactor = defaultReactor(reactor)
        if work is None:
            threaded = hasattr(self.reactor, "getThreadPool")
            work = ThreadedWork(self.reactor) if threaded else InlineWork()
        self.work = work
        self.partialExpiry = partialExpiry
        self.maxUploads = maxUploads
        self.uploadsInProgress = 0
        self._sweeper: LoopingCall | None = None
        self.metrics = metrics or Metrics("tcplab-files")
        self.metrics.describe(
            "tcplab_file_transfers_total", "counter", "File operations by op and outcome."
        )
        self.metrics.describe(
            "tcplab_file_transfer_bytes_total", "counter", "File bytes moved, by op."
        )

    def checkUploadSize(self, size: int) -> None:
        """
        @raise TooLarge: C{size} is over C{--max-size}.
        """
        if self.maxSize is not None and size > self.maxSize:
            raise TooLarge(f"{size} bytes is over the server's limit of {self.maxSize}")

    def openUpload(self, path: str, size: int, overwrite: bool, resume: bool) -> Upload:
        """
        Admit an upload as every front door does (the protocol, the
        tutorial listener, the web page): its size within C{--max-size}, a
        file name under the root, a place among C{maxUploads}; then lock its
        partial and count it until L{uploadEnded}.

        @raise FileServiceError: refused (C{too_large}, C{not_allowed},
            C{bad_request}, C{busy}, C{exists}...).
        """
        self.checkUploadSize(size)
        target = self.root.resolve(path)
        if target == self.root.path or not path.strip("/"):
            raise BadRequest("an upload needs a file name")
        if self.uploadsInProgress >= self.maxUploads:
            raise Busy(f"the server holds {self.maxUploads} uploads already; try again later")
        upload = Upload(target, size, overwrite, resume)
        self.uploadsInProgress += 1
        return upload

    def uploadEnded(self) -> None:
        """An upload from L{openUpload} finished, failed or was dropped: free its place."""
        self.uploadsInProgress -= 1

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A new connection."""
        protocol = FileServerProtocol()
        protocol.factory = self
        return protocol

    def startFactory(self) -> None:
        """Start sweeping abandoned partials (at once, then every so often)."""
        if self.partialExpiry and self.writable:
            self._sweeper = LoopingCall(self.sweepPartials)
            self._sweeper.clock = self.reactor
            interval = min(max(self.partialExpiry / 4, 1.0), 3600.0)
            self._sweeper.start(interval, now=True).addErrback(
                lambda f: self.log.failure("partial sweep stopped", f)
            )

    def stopFactory(self) -> None:
        """Stop the sweeps."""
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def sweepPartials(self) -> None:
        """Remove the partials left alone for longer than L{partialExpiry}, off the reactor."""
        root, expiry = self.root.path.path, self.partialExpiry
        try:
            d = self.work.run(lambda: sweepAbandonedPartials(root, expiry, time.time()))
        except Busy:
            return None  # busy: the next sweep will do

        def swept(count: int) -> None:
            if count:
                self.log.info(
                    "removed {count} abandoned partial uploads (older than {expiry:g}s)",
                    count=count,
                    expiry=expiry,
                )

        d.addCallbacks(swept, lambda f: self.log.failure("sweeping partials failed", f))
        return None

    @staticmethod
    def refusal(reason: str) -> bytes:
        """What a peer refused by a connection limit receives: an error frame."""
        return wire.frame(wire.encode(wire.errorMessage(wire.NOT_ALLOWED, reason)))
