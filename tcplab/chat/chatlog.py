"""
The operator's chat log: one line per message, with time, room and nick.

The log never stands in the chat's way: a write that fails (a full disk, a
vanished NFS mount) loses that entry only.  The operator gets one warning
when writing starts to fail and one notice when it works again, and the
C{tcplab_chat_log_errors_total} metric counts every entry lost; users see
nothing of it.
"""

from __future__ import annotations

import os
import time
from typing import BinaryIO

from twisted.application.service import Service
from twisted.logger import Logger

from tcplab.chat import wire
from tcplab.chat.events import ChatEvent
from tcplab.chat.hub import ChatHub
from tcplab.metrics import Metrics

LOG_ERRORS = "tcplab_chat_log_errors_total"
"""The metric counting chat log entries that could not be written."""

_LOGGED = frozenset({"message", "action", "announcement"})


def formatEntry(event: ChatEvent) -> str | None:
    """The log line for C{event}, or L{None} if it is not a message."""
    if event.kind not in _LOGGED:
        return None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.time))
    # The hub relays only sanitised text; cleaning again costs little and
    # keeps a forged line out of the log whatever a program posts.
    return f"{when} {event.room} {wire.sanitize(wire.describe(event))}\n"


def checkWritable(path: str) -> None:
    """
    Open C{path} for appending once, so that start-up fails on a bad path.

    @raise OSError: it cannot be (no such directory, permissions).
    """
    with open(path, "ab"):
        pass


class ChatLogService(Service):
    """Append every message of a hub to a file while the service runs."""

    log = Logger()

    def __init__(self, hub: ChatHub, path: str, metrics: Metrics | None = None) -> None:
        self.hub = hub
        self.path = path
        self.metrics = metrics or Metrics("tcplab-chat")
        self.metrics.describe(LOG_ERRORS, "counter", "Chat log entries that could not be written.")
        self.file: BinaryIO | None = None
        self.failing = False
        """Writing fails at the moment (the operator has been told once)."""

    def startService(self) -> None:
        """Open the log (appending) and start following the hub."""
        super().startService()
        # Unbuffered: an entry is written whole or not at all, and a failed
        # one is not retried with the next (a buffer would keep failing).
        self.file = open(self.path, "ab", buffering=0)  # noqa: SIM115 (closed in stopService)
        self.stopObserving = self.hub.observe(self.record)

    def record(self, event: ChatEvent) -> None:
        """Write one message's line; a failure costs that line only."""
        entry = formatEntry(event)
        if entry is None or self.file is None:
            return
        try:
            self.writeAll(entry.encode("utf-8"))
        except OSError as e:
            self.metrics.increment(LOG_ERRORS)
            if not self.failing:
                self.failing = True
                self.log.warn(
                    "cannot write the chat log {path}: {error}; chat goes on, "
                    "entries are lost until it can be written again",
                    path=self.path,
                    error=e.strerror or str(e),
                )
            return
        if self.failing:
            self.failing = False
            self.log.info("the chat log {path} can be written again", path=self.path)

    def writeAll(self, data: bytes) -> None:
        """Write C{data} to the file, however many calls it takes."""
        assert self.file is not None
        view = memoryview(data)
        while view:
            written = os.write(self.file.fileno(), view)
            view = view[written:]

    def stopService(self) -> None:
        """Stop following and close the file."""
        super().stopService()
        if self.file is not None:
            self.stopObserving()
            self.file.close()
            self.file = None
