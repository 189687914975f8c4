"""
A client for the file service, for Twisted programs and the ``tcplab`` command.

Every operation returns a Deferred (or is awaitable): L{FileClient.list},
L{stat}, L{get}, L{put}, L{delete}, L{login}.  Errors from the server arrive
as L{RemoteError} with the protocol's stable code; a transfer whose SHA-256
does not match raises L{ChecksumMismatch}.  Example::

    from twisted.internet import endpoints
    from tcplab.files import FileClient

    client = await endpoints.connectProtocol(
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", 8009), FileClient())
    for entry in await client.list(""):
        print(entry["name"], entry["size"])
    with open("copy.bin", "wb") as sink:
        await client.get("data.bin", sink)
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet import defer
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from tcplab.errors import ExitCode, ProtocolViolation, TcplabError
from tcplab.files import wire
from tcplab.files.storage import hashPrefix
from tcplab.files.stream import FrameSender

Progress = Callable[[int], None]

EXIT_CODES = {
    wire.NOT_FOUND: ExitCode.NOT_FOUND,
    wire.NOT_ALLOWED: ExitCode.NOT_ALLOWED,
    wire.TOO_LARGE: ExitCode.NOT_ALLOWED,
    wire.AUTH_REQUIRED: ExitCode.AUTH,
    wire.AUTH_FAILED: ExitCode.AUTH,
    wire.EXISTS: ExitCode.EXISTS,
    wire.CHECKSUM_MISMATCH: ExitCode.CHECKSUM,
    wire.BAD_REQUEST: ExitCode.PROTOCOL,
}


class RemoteError(TcplabError):
    """
    The server refused or failed an operation.

    @ivar code: the protocol's error code (C{not_found}, ...).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, EXIT_CODES.get(code, ExitCode.FAILURE))
        self.code = code


class ChecksumMismatch(TcplabError):
    """What arrived does not have the SHA-256 the sender announced."""

    exitCode = ExitCode.CHECKSUM


class ConnectionLostError(ProtocolViolation):
    """The connection ended in the middle of an operation."""


class _AnsweredEarly(Exception):
    """The server replied while an upload was still being sent."""


class FileClient(Int32StringReceiver):
    """
    One connection to a file server; one operation at a time.

    @ivar closed: fires when the connection is gone.
    """

    MAX_LENGTH = wire.MAX_FRAME
    transport: Any

    def __init__(self) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._replies: deque[dict[str, Any]] = deque()
        self._waiter: defer.Deferred[dict[str, Any]] | None = None
        self._data: Callable[[bytes], None] | None = None
        self._sender: FrameSender | None = None
        self._lost: Failure | None = None

    # Frames in

    def stringReceived(self, payload: bytes) -> None:
        """Route data to the download in progress, replies to whoever waits."""
        if payload[:1] == wire.DATA:
            if self._data is None:
                self._protocolError("data frame outside a download")
                return
            self._data(payload[1:])
            return
        try:
            message = wire.decode(payload)
        except wire.ProtocolError as e:
            self._protocolError(e.message)
            return
        # An answer while an upload is still being sent is an error (no
        # space, a bad frame ...): stop sending and let put() report it.
        # (Looked up first: the reply that starts an upload creates it.)
        uploading = self._sender
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(message)
        else:
            self._replies.append(message)
        if uploading is not None:
            uploading.abort(_AnsweredEarly())

    def lengthLimitExceeded(self, length: int) -> None:
        """The server announced an oversized frame: give up on it."""
        self._protocolError(f"the server sent a frame of {length} bytes")

    def _protocolError(self, why: str) -> None:
        self._lost = Failure(ProtocolViolation(f"protocol error: {why}"))
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fail whatever waits."""
        failure = self._lost or Failure(
            ConnectionLostError("the server closed the connection mid-operation")
        )
        self._lost = failure
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.errback(failure)
        self.closed.callback(None)

    async def _reply(self) -> dict[str, Any]:
        if self._replies:
            message = self._replies.popleft()
        elif self._lost is not None:
            self._lost.raiseException()
        else:
            self._waiter = defer.Deferred()
            message = await self._waiter
        if message.get("ok") is not True:
            code = message.get("error")
            text = message.get("message")
            if not isinstance(code, str) or not isinstance(text, str):
                raise ProtocolViolation(f"malformed reply: {message!r}")
            raise RemoteError(code, text)
        return message

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one control message and return the (successful) reply."""
        if self._lost is not None:
            self._lost.raiseException()
        self.sendString(wire.encode(message))
        return await self._reply()

    # Operations

    async def login(self, user: str, password: str) -> None:
        """Log in (needed for writes on a server with ``--auth``)."""
        await self.request({"op": "login", "user": user, "password": password})

    async def list(self, path: str = "") -> list[dict[str, Any]]:
        """The entries of a remote directory: name, type, size, mtime."""
        reply = await self.request({"op": "list", "path": path})
        entries = reply.get("entries")
        if not isinstance(entries, list):
            raise ProtocolViolation("malformed list reply")
        return entries

    async def stat(self, path: str) -> dict[str, Any]:
        """Name, type, size and mtime of one remote path."""
        return await self.request({"op": "stat", "path": path})

    async def delete(self, path: str) -> None:
        """Remove a remote file (or empty directory)."""
        await self.request({"op": "delete", "path": path})

    async def get(
        self,
        path: str,
        sink: BinaryIO,
        offset: int = 0,
        prefix: BinaryIO | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """
        Download C{path} from C{offset} into C{sink}, verifying the whole
        file's SHA-256; return the header (size, offset, mtime) plus
        C{sha256}.

        @param prefix: when resuming, the local bytes before C{offset}
            (they are hashed, so the check covers the whole file).
        @raise ChecksumMismatch: the file did not arrive intact.
        """
        hasher = hashPrefix(prefix, offset) if prefix is not None and offset else hashlib.sha256()
        received = 0
        write = sink.write

        def data(chunk: bytes) -> None:
            nonlocal received
            write(chunk)
            hasher.update(chunk)
            received += len(chunk)
            if progress is not None:
                progress(len(chunk))

        self._data = data
        try:
            header = await self.request({"op": "get", "path": path, "offset": offset})
            trailer = await self._reply()
        finally:
            self._data = None
        size = header.get("size")
        if type(size) is not int or offset + received != size:
            raise ProtocolViolation(f"received {offset + received} bytes of {size}")
        expected = trailer.get("sha256")
        if hasher.hexdigest() != expected:
            raise ChecksumMismatch(f"{path}: SHA-256 mismatch (expected {expected})")
        return {**header, "sha256": expected}

    async def put(
        self,
        path: str,
        source: BinaryIO,
        size: int | None = None,
        overwrite: bool = False,
        resume: bool = True,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """
        Upload C{source} (from its start, C{size} bytes) as C{path}; the
        server keeps what an interrupted earlier upload left and we send the
        rest.  Returns the final reply (size, sha256).

        @raise RemoteError: C{exists}, C{too_large}, C{not_allowed},
            C{checksum_mismatch} ...
        """
        if size is None:
            size = os.fstat(source.fileno()).st_size
        start = await self.request(
            {"op": "put", "path": path, "size": size, "overwrite": overwrite, "resume": resume}
        )
        offset = start.get("offset")
        if type(offset) is not int or not 0 <= offset <= size:
            raise ProtocolViolation(f"bad offset in reply: {offset!r}")
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
            return await self._reply()
        except ConnectionError:
            raise ConnectionLostError("the connection was lost during the upload") from None
        finally:
            self._sender = None
        self.sendString(wire.encode({"sha256": hasher.hexdigest()}))
        return await self._reply()
