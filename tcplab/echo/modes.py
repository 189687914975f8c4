"""
The echo service's reply modes, defined once for TCP and UDP.

L{replyFor} says what a message is answered with in each mode; the stream
protocols (L{tcplab.echo.stream}) and the datagram protocol
(L{tcplab.echo.datagram}) differ only in what a message is and in the line
end a stream reply gets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

Mode = Literal["echo", "upper", "ack", "count"]
"""The reply modes the echo service offers, by name."""

MODES: tuple[Mode, ...] = get_args(Mode)

DEFAULT_ACK = b"received"
DEFAULT_BANNER = b"Welcome to tcplab echo. Send lines; 'exit' to leave."
EXIT_LINE = b"exit"
LINE_END = b"\r\n"

Reply = Callable[[bytes], bytes]
"""What a message is answered with."""


def parseMode(name: str) -> Mode:
    """C{name} as a L{Mode}; L{ValueError} if it is not one."""
    for mode in MODES:
        if name == mode:
            return mode
    raise ValueError(f"unknown echo mode {name!r}; choose from {', '.join(MODES)}")


class Counter:
    """The count mode's reply: ``N: message``, N counting from 1."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: bytes) -> bytes:
        """Number C{message}."""
        self.count += 1
        return b"%d: %s" % (self.count, message)


def echoed(message: bytes) -> bytes:
    """The echo mode's reply: the message itself."""
    return message


def replyFor(mode: Mode, ack: bytes = DEFAULT_ACK) -> Reply:
    """
    The one definition of each mode: C{echo} gives the message back,
    C{upper} upper-cases its ASCII letters, C{ack} answers C{ack} whatever
    arrived, C{count} numbers the messages (a fresh counter per call).
    """
    if mode == "upper":
        return bytes.upper
    if mode == "ack":
        return lambda message: ack
    if mode == "count":
        return Counter()
    return echoed
