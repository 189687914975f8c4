"""
The file service: list, stat, get, put and delete over Int32StringReceiver
frames, streamed, resumable, verified with SHA-256 and confined to a root.

Public names: L{FileServerFactory} (serve a directory), L{FileClient}
(a Deferred-returning client with typed replies: L{Entry},
L{Downloaded}, L{Uploaded}), L{SafeRoot}, L{RemoteError},
L{ChecksumMismatch}.  The wire format is in docs/protocol.md.
"""

from tcplab.files.client import (
    ChecksumMismatch,
    FileClient,
    MalformedReply,
    OperationInProgress,
    RemoteError,
)
from tcplab.files.replies import Downloaded, Entry, Uploaded
from tcplab.files.root import SafeRoot
from tcplab.files.server import FileServerFactory, FileServerProtocol

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
