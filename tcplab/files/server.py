"""
The file service's Twisted side: a thin frame protocol over L{SafeRoot}
and L{Upload}.

L{FileServerProtocol} reads one request at a time, checks it against the
server's policy (root, read-only unless writable, maximum size, logins) and
answers; downloads stream with a push producer that the transport pauses
whenever its buffer is full, uploads are written as their frames arrive.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.addresses import describeAddress
from tcplab.auth import Authenticator, LoginFailed
from tcplab.files import wire
from tcplab.files.root import SafeRoot
from tcplab.files.storage import Upload, describe, hashPrefix, listDirectory
from tcplab.files.stream import FrameSender
from tcplab.interfaces import IGracefulStop, IMessageProgress, IRefusalFormat
from tcplab.metrics import Metrics


@implementer(IMessageProgress, IGracefulStop)
class FileServerProtocol(Int32StringReceiver):
    """One connection to the file service (docs/protocol.md)."""

    log = Logger()
    MAX_LENGTH = wire.MAX_FRAME
    factory: FileServerFactory
    transport: Any

    def connectionMade(self) -> None:
        """Note who this is; nobody is logged in yet."""
        self.peer = describeAddress(self.transport.getPeer())
        self.user: str | None = None
        self.upload: Upload | None = None
        self.sender: FrameSender | None = None
        self.transfer: dict[str, Any] = {}
        self.framesReceived = 0
        self.stopping = False

    # Frames in

    def stringReceived(self, payload: bytes) -> None:
        """Dispatch one frame: upload data, an upload's digest, or a request."""
        self.framesReceived += 1
        if self.transport.disconnecting:
            return
        try:
            if self.upload is not None:
                self.uploadFrame(payload)
            elif self.sender is not None:
                raise wire.ProtocolError(wire.BAD_REQUEST, "request sent during a download")
            elif payload[:1] == wire.DATA:
                raise wire.ProtocolError(wire.BAD_REQUEST, "data frame outside an upload")
            else:
                self.handleRequest(wire.parseRequest(payload))
        except wire.ProtocolError as e:
            self.fail(e)

    def lengthLimitExceeded(self, length: int) -> None:
        """An oversized frame: say so and hang up, allocating nothing for it."""
        self.fail(
            wire.ProtocolError(
                wire.TOO_LARGE, f"frame of {length} bytes exceeds {wire.MAX_FRAME}"
            ),
            close=True,
        )

    def messageInProgress(self) -> int | None:
        """For the slow-drip timeout: the frame count while one is half-read."""
        return self.framesReceived if self._unprocessed else None

    # Requests

    def handleRequest(self, request: wire.Request) -> None:
        """Carry out one request; a refused transfer is counted by outcome."""
        if request.op == "login":
            self.login(request)
            return
        try:
            self.checkPermission(request)
            self.carryOut(request)
        except wire.ProtocolError:
            if request.op in ("get", "put", "delete"):
                self.factory.metrics.increment(
                    "tcplab_file_transfers_total", op=request.op, outcome="refused"
                )
            raise

    def checkPermission(self, request: wire.Request) -> None:
        """Refuse what this user may not do here (anonymous writes, read-only)."""
        factory = self.factory
        writes = request.op in ("put", "delete")
        anonymous = factory.authenticator.enabled and self.user is None
        if anonymous and (writes or not factory.anonymousReads):
            raise wire.ProtocolError(wire.AUTH_REQUIRED, f"log in to {request.op}")
        if writes and not factory.writable:
            raise wire.ProtocolError(wire.NOT_ALLOWED, "this server is read-only")

    def carryOut(self, request: wire.Request) -> None:
        """Carry out one permitted request (a refusal raises L{wire.ProtocolError})."""
        root = self.factory.root
        if request.op == "list":
            path = root.existing(request.path)
            if not path.isdir():
                raise wire.ProtocolError(wire.BAD_REQUEST, f"{request.path!r} is not a directory")
            self.reply({"ok": True, "entries": listDirectory(path)})
        elif request.op == "stat":
            self.reply({"ok": True, **describe(root.existing(request.path))})
        elif request.op == "get":
            self.startDownload(request)
        elif request.op == "put":
            self.startUpload(request)
        elif request.op == "delete":
            self.delete(request)

    def login(self, request: wire.Request) -> None:
        """Check a user name and password (slowly on failure)."""
        d = defer.ensureDeferred(
            self.factory.authenticator.login(request.user, request.password, self.peer)
        )

        def loggedIn(user: str) -> None:
            self.user = user
            self.reply({"ok": True, "user": user})

        def failed(failure: Failure) -> None:
            failure.trap(LoginFailed)
            self.fail(wire.ProtocolError(wire.AUTH_FAILED, "wrong user name or password"))

        d.addCallbacks(loggedIn, failed)

    def delete(self, request: wire.Request) -> None:
        """Remove a file, or an empty directory."""
        path = self.factory.root.existing(request.path)
        if path == self.factory.root.path:
            raise wire.ProtocolError(wire.NOT_ALLOWED, "the root cannot be deleted")
        try:
            if path.isdir() and not path.islink():
                os.rmdir(path.path)
            else:
                path.remove()
        except OSError as e:
            raise wire.ProtocolError(wire.NOT_ALLOWED, f"cannot delete: {e.strerror}") from None
        self.logTransfer("delete", request.path, 0, "ok")
        self.reply({"ok": True})

    def startDownload(self, request: wire.Request) -> None:
        """Send the header, then the file from the offset, then its SHA-256."""
        path = self.factory.root.existing(request.path)
        if not path.isfile():
            raise wire.ProtocolError(wire.BAD_REQUEST, f"{request.path!r} is not a file")
        try:
            file = open(path.path, "rb")  # noqa: SIM115 (closed by FrameSender)
        except OSError as e:
            raise wire.ProtocolError(wire.NOT_ALLOWED, f"cannot read: {e.strerror}") from None
        size = path.getsize()
        if request.offset > size:
            file.close()
            raise wire.ProtocolError(
                wire.BAD_REQUEST, f"offset {request.offset} is past the end ({size} bytes)"
            )
        # The digest covers the whole file, also when resuming.
        hasher = hashPrefix(file, request.offset) if request.offset else hashlib.sha256()
        file.seek(request.offset)
        self.reply(
            {
                "ok": True,
                "size": size,
                "offset": request.offset,
                "mtime": int(path.getModificationTime()),
            }
        )
        self.transfer = {"op": "get", "path": request.path, "started": time.monotonic()}
        self.sender = FrameSender(file, self.transport, hasher, self.downloadFinished)
        self.sender.start()

    def downloadFinished(self, failure: Failure | None) -> None:
        """Send the trailer (or log the failure)."""
        sender, self.sender = self.sender, None
        assert sender is not None
        transfer, self.transfer = self.transfer, {}
        if failure is not None:
            self.logTransfer(
                "get",
                transfer["path"],
                sender.sent,
                f"failed: {failure.getErrorMessage()}",
                transfer["started"],
            )
            if self.transport.connected:
                self.fail(wire.ProtocolError(wire.SERVER_ERROR, "read error"), close=True)
            return
        self.reply({"ok": True, "done": True, "sha256": sender.hasher.hexdigest()})
        self.logTransfer("get", transfer["path"], sender.sent, "ok", transfer["started"])
        if self.stopping:
            self.transport.loseConnection()

    def startUpload(self, request: wire.Request) -> None:
        """Check the size and the name, open the partial, tell the offset."""
        maxSize = self.factory.maxSize
        if maxSize is not None and request.size > maxSize:
            raise wire.ProtocolError(
                wire.TOO_LARGE, f"{request.size} bytes is over the server's limit of {maxSize}"
            )
        target = self.factory.root.resolve(request.path)
        if target == self.factory.root.path or not request.path.strip("/"):
            raise wire.ProtocolError(wire.BAD_REQUEST, "put needs a file name")
        self.upload = Upload(target, request.size, request.overwrite, request.resume)
        self.transfer = {"op": "put", "path": request.path, "started": time.monotonic()}
        self.reply({"ok": True, "offset": self.upload.offset})

    def uploadFrame(self, payload: bytes) -> None:
        """Data for the upload in progress, or its closing digest."""
        upload = self.upload
        assert upload is not None
        if payload[:1] == wire.DATA:
            upload.write(payload[1:])
            return
        if not upload.complete:
            raise wire.ProtocolError(
                wire.BAD_REQUEST,
                f"upload ended after {upload.received} of {upload.size} bytes",
            )
        digest = wire.parseDigest(payload)
        self.upload = None
        transfer, self.transfer = self.transfer, {}
        try:
            upload.finish(digest)
        except wire.ProtocolError as e:
            self.logTransfer(
                "put",
                transfer["path"],
                upload.received - upload.offset,
                f"failed: {e.code}",
                transfer["started"],
            )
            raise
        self.logTransfer(
            "put", transfer["path"], upload.received - upload.offset, "ok", transfer["started"]
        )
        self.reply({"ok": True, "done": True, "size": upload.size, "sha256": digest})
        if self.stopping:
            self.transport.loseConnection()

    # Replies and endings

    def reply(self, message: dict[str, Any]) -> None:
        """Send a control message."""
        self.sendString(wire.encode(message))

    def fail(self, error: wire.ProtocolError, close: bool = False) -> None:
        """
        Send an error.  During a transfer the connection is closed too (the
        frames still in flight could not be told apart from what follows);
        a failed upload's partial is kept unless the failure was the data's.
        """
        self.log.info(
            "{peer}: error {code}: {message}",
            peer=self.peer,
            code=error.code,
            message=error.message,
        )
        self.reply(wire.errorMessage(error.code, error.message))
        if self.upload is not None:
            upload, self.upload = self.upload, None
            upload.abort(keep=error.code not in (wire.NO_SPACE, wire.CHECKSUM_MISMATCH))
            self.logTransfer(
                "put",
                self.transfer.get("path", "?"),
                upload.received - upload.offset,
                f"failed: {error.code}",
                self.transfer.get("started"),
            )
            close = True
        if close:
            self.transport.loseConnection()

    def logTransfer(
        self, op: str, path: str, count: int, outcome: str, started: float | None = None
    ) -> None:
        """Log one transfer with its figures, and count it in the metrics."""
        duration = time.monotonic() - started if started is not None else 0.0
        rate = count / duration / 1e6 if duration > 0 else 0.0
        self.log.info(
            "{peer} {op} {path!r}: {outcome}, {count} bytes in {duration:.3f}s ({rate:.1f} MB/s)",
            peer=self.peer,
            op=op,
            path=path,
            outcome=outcome,
            count=count,
            duration=duration,
            rate=rate,
        )
        metrics = self.factory.metrics
        metrics.increment("tcplab_file_transfers_total", op=op, outcome=outcome.split(":")[0])
        metrics.increment("tcplab_file_transfer_bytes_total", count, op=op)

    def serverStopping(self) -> None:
        """Shutting down: let a running transfer finish; otherwise close now."""
        self.stopping = True
        if self.upload is None and self.sender is None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Keep an interrupted upload's partial for a resume."""
        if self.upload is not None:
            upload, self.upload = self.upload, None
            upload.abort(keep=True)
            self.logTransfer(
                "put",
                self.transfer.get("path", "?"),
                upload.received - upload.offset,
                "interrupted (partial kept)",
                self.transfer.get("started"),
            )


@implementer(IRefusalFormat)
class FileServerFactory(Factory):
    """
    Serve the files under a root.

    @ivar root: the L{SafeRoot} served.
    @ivar writable: whether put and delete are allowed.
    @ivar maxSize: the largest upload accepted, in bytes (L{None}: any).
    @ivar anonymousReads: with logins enabled, whether anonymous users may
        still list, stat and get.
    """

    noisy = False

    def __init__(
        self,
        root: str | SafeRoot,
        writable: bool = False,
        maxSize: int | None = None,
        authenticator: Authenticator | None = None,
        anonymousReads: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.root = root if isinstance(root, SafeRoot) else SafeRoot(root)
        self.writable = writable
        self.maxSize = maxSize
        self.authenticator = authenticator or Authenticator([])
        self.anonymousReads = anonymousReads
        self.metrics = metrics or Metrics("tcplab-files")
        self.metrics.describe(
            "tcplab_file_transfers_total", "counter", "File operations by op and outcome."
        )
        self.metrics.describe(
            "tcplab_file_transfer_bytes_total", "counter", "File bytes moved, by op."
        )

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A new connection."""
        protocol = FileServerProtocol()
        protocol.factory = self
        return protocol

    @staticmethod
    def refusal(reason: str) -> bytes:
        """What a peer refused by a connection limit receives: an error frame."""
        return wire.frame(wire.encode(wire.errorMessage(wire.NOT_ALLOWED, reason)))
