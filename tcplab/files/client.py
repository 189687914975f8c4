"""
A client for the file service, for Twisted programs and the ``tcplab`` command.

Every operation of L{FileClient} returns a L{Deferred} (which a coroutine may
C{await}): L{FileClient.list}, L{FileClient.stat}, L{FileClient.get},
L{FileClient.put}, L{FileClient.delete}, L{FileClient.login}.  They fire with
typed records from L{tcplab.files.replies} (L{Entry}, L{Downloaded},
L{Uploaded}), never raw JSON.  Errors from the server arrive as L{RemoteError}
with the protocol's stable code; a transfer whose SHA-256 does not match
raises L{ChecksumMismatch}; a server that breaks the protocol (a malformed
reply, more bytes than it announced, replies nobody asked for) raises
L{MalformedReply} and the connection is dropped.  Example::

    from twisted.internet import endpoints
    from tcplab.files import FileClient

    client = await endpoints.connectProtocol(
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", 8009), FileClient())
    for entry in await client.list(""):
        print(entry.name, entry.size)
    with open("copy.bin", "wb") as sink:
        await client.get("data.bin", sink)
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Coroutine
from typing import Any, BinaryIO, TypeVar

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from tcplab.errors import ProtocolViolation
from tcplab.files import wire
from tcplab.files.download import BoundedDownload, Progress
from tcplab.files.pieces import FrameItem, PieceDecoder
from tcplab.files.replies import (
    EXIT_CODES,
    ChecksumMismatch,
    ConnectionLostError,
    Downloaded,
    Entry,
    MalformedReply,
    OperationInProgress,
    RemoteError,
    Uploaded,
    checkReply,
    integer,
    parseDone,
    parseDownloadHeader,
    parseEntry,
    parseListPage,
    parseUploadOffset,
    printable,
)
from tcplab.files.storage import hashPrefix
from tcplab.files.stream import FrameSender
from tcplab.sending import setReadSize
from tcplab.transports import ConnectionTransport

__all__ = [
    "EXIT_CODES",
    "ChecksumMismatch",
    "ConnectionLostError",
    "FileClient",
    "MalformedReply",
    "OperationInProgress",
    "RemoteError",
]

Listing = list[Entry]
T = TypeVar("T")

MAX_LIST_ENTRIES = 10_000_000
"""A listing longer than this (over all its pages) is refused as absurd."""

DOWNLOAD_READ_SIZE = 1024 * 1024
"""
How much a file client reads at a time: a download's data comes in 64 KiB
frames back to back, and the file is written once per read (one C{writev}
of its pieces, L{BoundedDownload.flush}).  Above the services' 256 KiB
(L{tcplab.sending.BULK_READ_SIZE}) because page-cache writes are cheaper
per byte the larger they are: C{tcplab get} of 1 GiB took about 5 % less
client CPU with reads of 1 MiB than of 256 KiB (perf stat, 7 runs each).
The one read buffer it needs is shared (L{tcplab.directread.READ_BUFFER}).
"""

MAX_QUEUED_REPLIES = 4
"""Replies kept while nobody waits for them; a server sending more is broken."""


class _AnsweredEarly(Exception):
    """The server replied while an upload was still being sent."""


class FileClient(Protocol):
    """
    One connection to a file server; one operation at a time.

    Each operation returns a L{Deferred}; starting a second one before the
    first has fired fails with L{OperationInProgress}.

    Frames are decoded by a L{PieceDecoder}: a download's data goes to its
    file and its hash as views of what the transport read, never copied in
    between, and the transport reads up to L{DOWNLOAD_READ_SIZE} at a time.

    @ivar closed: fires when the connection is gone.
    """

    transport: ConnectionTransport  # type: ignore[assignment]

    def __init__(self) -> None:
        self.decoder = PieceDecoder(wire.MAX_FRAME)
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._replies: deque[wire.JSONObject] = deque()
        self._waiter: defer.Deferred[wire.JSONObject] | None = None
        self._download: BoundedDownload | None = None
        self._sender: FrameSender | None = None
        self._lost: Failure | None = None
        self._operation: str | None = None

    @property
    def disconnected(self) -> bool:
        """Whether the connection is gone (or being dropped): open a new one."""
        return self._lost is not None

    @property
    def operation(self) -> str | None:
        """The operation in progress (C{"get"}, ...), or L{None} when idle."""
        return self._operation

    # Frames in

    def connectionMade(self) -> None:
        """
        Read in bulk (L{DOWNLOAD_READ_SIZE}), into a buffer the TCP
        connection lends (L{lendReads}): every read is used up, or what is
        left of it copied, before L{dataReceived} returns.
        """
        setReadSize(self.transport, DOWNLOAD_READ_SIZE)
        # Imported once connected: it imports twisted.internet.tcp (see tcplab.tlsfree).
        from tcplab.lentreads import lendReads

        lendReads(self.transport)

    def dataReceived(self, data: bytes | memoryview) -> None:
        """
        Decode what arrived and route each item, until the connection is
        given up.  C{data} may be a lent C{memoryview}: it is given back to
        the decoder (L{PieceDecoder.release}) before this returns.
        """
        if self._lost is not None:
            return  # being dropped: what is still in the buffer is not trusted
        decoder = self.decoder
        decoder.feed(data)
        try:
            while self._lost is None:
                try:
                    item = decoder.next()
                except wire.FrameTooLarge as e:
                    self._fail(MalformedReply(f"the server sent a frame of {e.length} bytes"))
                    return
                if item is None:
                    return
                self.frameReceived(item)
        finally:
            self._flushDownload()
            decoder.release()

    def frameReceived(self, payload: FrameItem) -> None:
        """Route data to the download in progress, replies to whoever waits."""
        if self._lost is not None:
            return  # being dropped: what is still in the buffer is not trusted
        if isinstance(payload, memoryview):
            self._dataReceived(payload)
            return
        self._flushDownload()  # a reply may end the download: its data is written first
        if self._lost is not None:
            return  # the data could not be written: the download failed
        try:
            message = wire.decode(payload)
        except wire.ProtocolError as e:
            self._fail(MalformedReply(e.message))
            return
        # An answer while an upload is still being sent is an error (no
        # space, a bad frame ...): stop sending and let put() report it.
        # (Looked up first: the reply that starts an upload creates it.)
        uploading = self._sender
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(message)
        elif len(self._replies) < MAX_QUEUED_REPLIES:
            self._replies.append(message)
        else:
            self._fail(MalformedReply("the server sent replies nobody asked for"))
            return
        if uploading is not None:
            uploading.abort(_AnsweredEarly())

    def _dataReceived(self, chunk: memoryview) -> None:
        if self._download is None:
            self._fail(MalformedReply("data frame outside a download"))
            return
        try:
            self._download.receive(chunk)
        except (MalformedReply, OSError) as e:
            self._fail(e)

    def _flushDownload(self) -> None:
        """Write what the download gathered (L{BoundedDownload.flush})."""
        download = self._download
        if download is not None and download.pending:
            try:
                download.flush()
            except OSError as e:
                self._fail(e)

    def _fail(self, why: Exception) -> None:
        """Drop the connection; whatever waits fails with C{why}."""
        if self._lost is None:
            self._lost = Failure(why)
        self._replies.clear()  # from a server we gave up on: not to be trusted
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fail whatever waits."""
        if self._lost is None:
            self._lost = Failure(
                ConnectionLostError("the server closed the connection mid-operation")
            )
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.errback(self._lost)
        self.closed.callback(None)

    # Requests and replies

    def _send(self, message: wire.JSONObject) -> None:
        self.transport.write(wire.frame(wire.encode(message)))

    async def _message(self) -> wire.JSONObject:
        """The next control message, whatever it says."""
        if self._replies:
            return self._replies.popleft()
        if self._lost is not None:
            self._lost.raiseException()
        self._waiter = defer.Deferred()
        return await self._waiter

    async def _reply(self) -> wire.JSONObject:
        """The next reply, which must be a success (else its L{RemoteError})."""
        return checkReply(await self._message())

    # The coroutine's yield and send types are Any as in Twisted's ensureDeferred.
    def _run(self, name: str, operation: Coroutine[Any, Any, T]) -> defer.Deferred[T]:
        """
        Run one operation, refusing it while another is in progress; a
        protocol violation also drops the connection (its state is unknown).
        """
        if self._operation is not None:
            operation.close()
            return defer.fail(
                OperationInProgress(
                    f"cannot start {name}: {self._operation} is still in progress "
                    "on this connection (one operation at a time)"
                )
            )
        if self._lost is not None and not self._replies:
            # (With a reply kept -- a refusal sent before the server hung
            # up, say -- the operation runs and reports that reply.)
            operation.close()
            return defer.fail(self._lost)
        self._operation = name

        async def guarded() -> T:
            try:
                return await operation
            except ProtocolViolation as e:
                self._fail(e)
                raise
            finally:
                self._operation = None

        return defer.ensureDeferred(guarded())

    # Operations

    def login(self, user: str, password: str) -> defer.Deferred[None]:
        """Log in (needed for writes on a server with ``--auth``)."""

        async def login() -> None:
            self._send({"op": "login", "user": user, "password": password})
            await self._reply()

        return self._run("login", login())

    def list(self, path: str = "") -> defer.Deferred[Listing]:
        """
        The entries of a remote directory, every page of it: at most
        L{MAX_LIST_ENTRIES}, or L{MalformedReply}.
        """

        async def listing() -> Listing:
            self._send({"op": "list", "path": path})
            entries: Listing = []
            while True:
                page = parseListPage(await self._reply())
                entries.extend(page.entries)
                if len(entries) > MAX_LIST_ENTRIES:
                    raise MalformedReply(f"a listing of more than {MAX_LIST_ENTRIES} entries")
                if not page.more:
                    return entries

        return self._run("list", listing())

    def stat(self, path: str) -> defer.Deferred[Entry]:
        """Name, kind, size and mtime of one remote path."""

        async def stat() -> Entry:
            self._send({"op": "stat", "path": path})
            return parseEntry(await self._reply(), listed=False)

        return self._run("stat", stat())

    def delete(self, path: str) -> defer.Deferred[None]:
        """Remove a remote file (or empty directory)."""

        async def delete() -> None:
            self._send({"op": "delete", "path": path})
            await self._reply()

        return self._run("delete", delete())

    def get(
        self,
        path: str,
        sink: BinaryIO,
        offset: int = 0,
        prefix: BinaryIO | None = None,
        progress: Progress | None = None,
    ) -> defer.Deferred[Downloaded]:
        """
        Download C{path} from C{offset} into C{sink}, verifying the whole
        file's SHA-256.  Never more than the size the server announced is
        written to C{sink}: a server sending more is a L{MalformedReply}.

        @param prefix: when resuming, the local bytes before C{offset}
            (they are hashed, so the check covers the whole file).
        @raise ChecksumMismatch: the file did not arrive intact.
        @raise OSError: C{sink} could not be written (the connection is
            dropped).
        """
        return self._run("get", self._get(path, sink, offset, prefix, progress))

    async def _get(
        self,
        path: str,
        sink: BinaryIO,
        offset: int,
        prefix: BinaryIO | None,
        progress: Progress | None,
    ) -> Downloaded:
        hasher = hashPrefix(prefix, offset) if prefix is not None and offset else hashlib.sha256()
        download = BoundedDownload(sink, hasher, progress)
        self._download = download
        try:
            self._send({"op": "get", "path": path, "offset": offset})
            header = parseDownloadHeader(await self._reply(), offset)
            download.expect(header.size, header.size - offset)
            expected = parseDone(await self._reply())
        finally:
            self._download = None
        if download.remaining:
            raise MalformedReply(
                f"the download ended {download.remaining} bytes short of {header.size}"
            )
        if hasher.hexdigest() != expected:
            raise ChecksumMismatch(f"{printable(path)}: SHA-256 mismatch (expected {expected})")
        return Downloaded(header.size, offset, header.mtime, expected)

    def put(
        self,
        path: str,
        source: BinaryIO,
        size: int | None = None,
        overwrite: bool = False,
        resume: bool = True,
        progress: Progress | None = None,
        started: Progress | None = None,
    ) -> defer.Deferred[Uploaded]:
        """
        Upload C{source} (a seekable file: from its start, C{size} bytes, by
        default all of it) as C{path}; the server keeps what an interrupted
        earlier upload left and we send the rest.

        @param started: called with the offset the server resumes from,
            before any data is sent.
        @raise RemoteError: C{exists}, C{busy}, C{too_large}, C{not_allowed},
            C{checksum_mismatch} ...
        """
        return self._run(
            "put", self._put(path, source, size, overwrite, resume, progress, started)
        )

    async def _put(
        self,
        path: str,
        source: BinaryIO,
        size: int | None,
        overwrite: bool,
        resume: bool,
        progress: Progress | None,
        started: Progress | None,
    ) -> Uploaded:
        if size is None:
            size = source.seek(0, os.SEEK_END)
        self._send(
            {"op": "put", "path": path, "size": size, "overwrite": overwrite, "resume": resume}
        )
        offset = parseUploadOffset(await self._reply(), size)
        if started is not None:
            started(offset)
        hasher = hashPrefix(source, offset)
        source.seek(offset)
        if progress is not None and offset:
            progress(offset)
        sent: defer.Deferred[None] = defer.Deferred()

        def finished(failure: Failure | None) -> None:
            sent.errback(failure) if failure is not None else sent.callback(None)

        self._sender = FrameSender(
            source, self.transport, hasher, finished, size - offset, progress, closeFile=False
        )
        try:
            self._sender.start()
            await sent
        except _AnsweredEarly:
            await self._reply()
            raise MalformedReply("the server accepted an upload before it was complete") from None
        except ConnectionError:
            if self._lost is not None:
                self._lost.raiseException()
            raise ConnectionLostError("the connection was lost during the upload") from None
        finally:
            self._sender = None
        ours = hasher.hexdigest()
        self._send({"sha256": ours})
        reply = await self._reply()
        theirs = parseDone(reply)
        if theirs != ours or integer(reply, "size") != size:
            raise MalformedReply("the server confirmed another size or SHA-256 than was sent")
        return Uploaded(size, offset, ours)
