"""
The chat's wire format, pure: decoding, sanitising and formatting lines.

Nothing here does I/O.  Every line a client sends is decoded as UTF-8
(invalid bytes become U+FFFD, never an error), stripped of control
characters and terminal escape sequences before anyone else sees it, and
formatted once into the bytes every recipient gets.
"""

from __future__ import annotations

import re
import time

NOTICE = "*** "
"""The prefix of every server notice (joins, leaves, errors, replies to
commands), so scripts can tell them from messages."""

ERROR = NOTICE + "error: "
"""The prefix of every error notice."""

END_OF_HISTORY = NOTICE + "end of history"

NICK_RULES = "1 to 16 letters, digits, '_', '.' or '-', not starting with '-' or '.'"
_NICK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}$")
_ROOM = re.compile(r"^#?([A-Za-z0-9_][A-Za-z0-9_.-]{0,31})$")

# ANSI/VT escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST),
# other two-byte escapes; then every remaining C0/C1 control, DEL, and the
# Unicode bidirectional overrides that can reorder what a terminal shows.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def decode(line: bytes) -> str:
    """Bytes from a client as text; invalid UTF-8 is replaced, never fatal."""
    return line.decode("utf-8", "replace")


def sanitize(text: str) -> str:
    """
    Remove terminal escape sequences and control characters (a tab becomes
    a space), so relayed text cannot rewrite anyone's terminal.
    """
    text = _ESCAPES.sub("", text).replace("\t", " ")
    return _CONTROLS.sub("", text).strip()


def isValidNick(nick: str) -> bool:
    """Whether C{nick} follows L{NICK_RULES}."""
    return bool(_NICK.match(nick))


def normalizeRoom(name: str) -> str | None:
    """C{#name} for a valid room name (with or without the C{#}), else L{None}."""
    match = _ROOM.match(name)
    return f"#{match.group(1).lower()}" if match else None


def parseCommand(text: str) -> tuple[str, str] | None:
    """
    Split ``/name rest`` into (name, rest), or L{None} for an ordinary line.

    ``//text`` is an ordinary line starting with ``/`` (the first is dropped
    by L{messageText}).
    """
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, rest = text[1:].partition(" ")
    return name.lower(), rest.strip()


def messageText(text: str) -> str:
    """The text of an ordinary line (``//x`` means ``/x``)."""
    return text[1:] if text.startswith("//") else text


def line(text: str) -> bytes:
    """Encode one outgoing line with the telnet-friendly CRLF."""
    return text.encode("utf-8") + b"\r\n"


def notice(text: str) -> bytes:
    """A server notice line."""
    return line(NOTICE + text)


def error(text: str) -> bytes:
    """An error notice line."""
    return line(ERROR + text)


def timestamp(when: float) -> str:
    """``HH:MM:SS`` in local time, for history lines."""
    return time.strftime("%H:%M:%S", time.localtime(when))
