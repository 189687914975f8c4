"""
The file service: list, stat, get, put and delete over length-prefixed
frames, streamed, resumable, verified with SHA-256 and confined to a root.

Public names: L{FileServerFactory} (serve a directory), L{FileClient}
(a Deferred-returning client with typed replies: L{Entry},
L{Downloaded}, L{Uploaded}), L{SafeRoot}, L{RemoteError},
L{ChecksumMismatch}.  The wire format is in docs/protocol.md.

The server side, one module per concern: C{wire} (frames and messages,
pure), C{pieces} (the frame stream decoded without copying file data; the
client uses it too), C{errors} (domain errors and their wire codes), C{root}
(confinement), C{listing} (entries and paged listings), C{partials}
(partial files: names, locks, cleanup), C{storage} (uploads, hashing),
C{work} (blocking jobs off the reactor thread), C{records} (transfer
outcomes, logs and metrics), C{session} and C{transfers} (one client's
requests, permissions and transfers, without sockets), C{server} (the
protocol adapter and the factory), C{stream} (files as data frames, with
backpressure) and C{tutorial} (the socket tutorials' own file protocols).
"""

from typing import TYPE_CHECKING, Any

from tcplab.files.client import (
    ChecksumMismatch,
    FileClient,
    MalformedReply,
    OperationInProgress,
    RemoteError,
)
from tcplab.files.replies import Downloaded, Entry, Uploaded
from tcplab.files.root import SafeRoot

if TYPE_CHECKING:
    from tcplab.files.server import FileServerFactory, FileServerProtocol

_SERVER_NAMES = ("FileServerFactory", "FileServerProtocol")


def __getattr__(name: str) -> Any:
    """
    The server's names, imported on first use: the ``tcplab get/put``
    client never loads the server's modules (about 15 ms of its start-up).
    """
    if name in _SERVER_NAMES:
        from tcplab.files import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ChecksumMismatch",
    "Downloaded",
    "Entry",
    "FileClient",
    "FileServerFactory",
    "FileServerProtocol",
    "MalformedReply",
    "OperationInProgress",
    "RemoteError",
    "SafeRoot",
    "Uploaded",
]
