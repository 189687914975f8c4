"""The operator's chat log: one line per message, with time, room and nick."""

from __future__ import annotations

import time
from typing import TextIO

from twisted.application.service import Service

from tcplab.chat.hub import ChatEvent, ChatHub

_LOGGED = {"message": "<{nick}> {text}", "action": "* {nick} {text}", "announcement": "*** {text}"}


def formatEntry(event: ChatEvent) -> str | None:
    """The log line for C{event}, or L{None} if it is not a message."""
    template = _LOGGED.get(event.kind)
    if template is None:
        return None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.time))
    return f"{when} {event.room} {template.format(nick=event.nick, text=event.text)}\n"


class ChatLogService(Service):
    """Append every message of a hub to a file while the service runs."""

    def __init__(self, hub: ChatHub, path: str) -> None:
        self.hub = hub
        self.path = path
        self.file: TextIO | None = None

    def startService(self) -> None:
        """Open the log (appending) and start following the hub."""
        super().startService()
        # Held open for the life of the service, closed in stopService.
        self.file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.stopObserving = self.hub.observe(self.record)

    def record(self, event: ChatEvent) -> None:
        """Write one message's line."""
        entry = formatEntry(event)
        if entry is not None and self.file is not None:
            self.file.write(entry)

    def stopService(self) -> None:
        """Stop following and close the file."""
        super().stopService()
        if self.file is not None:
            self.stopObserving()
            self.file.close()
            self.file = None
