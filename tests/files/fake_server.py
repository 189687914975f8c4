"""
A scripted file server for client tests: it speaks the frames of
docs/protocol.md but answers each request with whatever a test's script
says -- the new protocol features (paged listings, C{busy}, symlink flags)
and every way a broken or malicious server can misbehave.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from tcplab.files import wire
from tcplab.files.client import FileClient
from tests.memory import MemoryConnection, connectInMemory

Script = Callable[["FakeFileServer", dict[str, Any]], None]


class FakeFileServer(Int32StringReceiver):
    """A file server whose answers come from C{script(server, request)}."""

    MAX_LENGTH = wire.MAX_FRAME
    transport: Any

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.uploaded = bytearray()

    def stringReceived(self, payload: bytes) -> None:
        if payload[:1] == wire.DATA:
            self.uploaded += payload[1:]
            return
        message = json.loads(payload)
        self.requests.append(message)
        self.script(self, message)

    def reply(self, **fields: Any) -> None:
        """Send one control message with these fields."""
        self.sendString(json.dumps(fields).encode())

    def raw(self, payload: bytes) -> None:
        """Send one frame with exactly this payload."""
        self.sendString(payload)

    def data(self, chunk: bytes) -> None:
        """Send one data frame."""
        self.sendString(wire.DATA + chunk)

    def download(self, content: bytes, offset: int = 0, mtime: int = 1763880000) -> None:
        """Answer a get honestly: header, data, trailer."""
        self.reply(ok=True, size=len(content), offset=offset, mtime=mtime)
        for start in range(offset, len(content), wire.CHUNK_SIZE):
            self.data(content[start : start + wire.CHUNK_SIZE])
        self.reply(ok=True, done=True, sha256=hashlib.sha256(content).hexdigest())

    def finishUpload(self, message: dict[str, Any], size: int) -> None:
        """Answer an upload's closing digest as an honest server does."""
        self.reply(ok=True, done=True, size=size, sha256=message["sha256"])


def entry(name: str, kind: str = "file", size: int = 0, **more: Any) -> dict[str, Any]:
    """A listing entry."""
    return {"name": name, "type": kind, "size": size, "mtime": 1763880000, **more}


def fakeServerFactory(script: Script) -> Factory:
    """A factory of L{FakeFileServer}s; C{factory.servers} lists those built."""

    class FakeFactory(Factory):
        servers: list[FakeFileServer] = []

        def buildProtocol(self, addr: Any) -> FakeFileServer:
            server = FakeFileServer(script)
            server.factory = self
            self.servers.append(server)
            return server

    FakeFactory.servers = []
    return FakeFactory()


def connectFake(script: Any) -> tuple[FileClient, MemoryConnection]:
    """A FileClient connected in memory to a scripted fake server."""
    client = FileClient()
    return client, connectInMemory(fakeServerFactory(script), client)


def outcome(connection: MemoryConnection, operation: defer.Deferred[Any]) -> Any:
    """Deliver everything, then return what C{operation} fired with (or raise its error)."""
    connection.flush()
    results: list[Any] = []
    operation.addBoth(results.append)
    assert results, "the operation never finished"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def serveInMemory(root: str, client: Any = None, **kwargs: Any) -> MemoryConnection:
    """
    A real file server on C{root}, connected in memory to C{client} (a
    Collector by default): its timers run on the connection's clock and its
    blocking work (hashing, directory reads) inline, so nothing waits on a
    thread the in-memory pump cannot see.
    """
    from twisted.internet.testing import MemoryReactorClock

    from tcplab.files import FileServerFactory
    from tcplab.files.work import InlineWork

    clock = kwargs.pop("clock", None) or MemoryReactorClock()
    factory = FileServerFactory(root, reactor=clock, work=InlineWork(), **kwargs)
    return connectInMemory(factory, client, clock=clock)
