"""
The chat's wire format, pure: decoding, sanitising, parsing and rendering lines.

Nothing here does I/O.  Every line a client sends is decoded as UTF-8
(invalid bytes become U+FFFD, never an error) and cleaned by L{sanitize}
before anything else looks at it; every event the hub emits is turned into
the bytes a client receives by L{render} (L{Renderer} does it once per
event however many members receive it).
"""

from __future__ import annotations

import re
import time
import unicodedata

from tcplab.chat.events import ChatEvent, Delivery, Notice, PrivateMessage
from tcplab.chat.names import NICK_RULES

__all__ = [
    "END_OF_HISTORY",
    "ERROR",
    "NICK_RULES",
    "NOTICE",
    "Renderer",
    "decode",
    "error",
    "line",
    "messageText",
    "normalizeRoom",
    "notice",
    "paginate",
    "parseCommand",
    "render",
    "sanitize",
]

NOTICE = "*** "
"""The prefix of every server notice (joins, leaves, errors, replies to
commands), so scripts can tell them from messages."""

ERROR = NOTICE + "error: "
"""The prefix of every error notice."""

END_OF_HISTORY = NOTICE + "end of history"

ROOM_RULES = "1 to 32 letters, digits, '_', '.' or '-' after an optional '#'"
_ROOM = re.compile(r"#?([A-Za-z0-9_][A-Za-z0-9_.-]{0,31})")

# ANSI/VT escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST),
# DCS/SOS/PM/APC strings, other two-byte escapes, and the C1 CSI.  They are
# removed whole, so their parameters do not show up as text.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)

REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})
"""
Unicode categories removed from everything relayed: controls (Cc), format
characters (Cf: bidi marks, isolates, embeddings and overrides, zero-width
characters, the BOM, tag characters), line and paragraph separators (Zl,
Zp: U+2028 and U+2029, which many clients break lines at), private-use
(Co), surrogates (Cs) and unassigned code points (Cn, which a later Unicode
version may turn into any of these).
"""


def decode(data: bytes) -> str:
    """Bytes from a client as text; invalid UTF-8 is replaced, never fatal."""
    return data.decode("utf-8", "replace")


def sanitize(text: str) -> str:
    """
    Remove terminal escape sequences and every character of
    L{REMOVED_CATEGORIES} (a tab becomes a space), then outer whitespace:
    relayed text can neither rewrite a terminal nor start a forged line.
    """
    if text.isprintable():
        return text.strip()  # the common case: nothing to remove
    text = _ESCAPES.sub("", text).replace("\t", " ")
    category = unicodedata.category
    return "".join(c for c in text if category(c) not in REMOVED_CATEGORIES).strip()


def normalizeRoom(name: str) -> str | None:
    """C{#name} for a valid room name (with or without the C{#}), else L{None}."""
    match = _ROOM.fullmatch(name)
    return f"#{match.group(1).lower()}" if match else None


def parseCommand(text: str) -> tuple[str, str] | None:
    """
    Split ``/name rest`` into (name, rest), or L{None} for an ordinary line.

    ``//text`` is an ordinary line starting with ``/`` (the first is dropped
    by L{messageText}).  C{text} must already be sanitised, so an invisible
    character in front cannot hide a command (and its password) as a message.
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


def describe(event: ChatEvent) -> str:
    """The text of a room event's line, as members and the chat log show it."""
    kind = event.kind
    if kind == "message":
        return f"<{event.nick}> {event.text}"
    if kind == "action":
        return f"* {event.nick} {event.text}"
    if kind == "announcement":
        return NOTICE + event.text
    if kind == "join":
        return f"{NOTICE}{event.nick} joined {event.room}"
    if kind == "leave":
        return f"{NOTICE}{event.nick} left {event.room} ({event.text})"
    return f"{NOTICE}{event.nick} is now known as {event.text}"


def render(delivery: Delivery) -> bytes:
    """The bytes a client receives for one thing the hub delivers."""
    if isinstance(delivery, ChatEvent):
        return line(describe(delivery))
    if isinstance(delivery, PrivateMessage):
        if delivery.echo:
            return line(f"[private to {delivery.recipient}] {delivery.text}")
        return line(f"[private] <{delivery.sender}> {delivery.text}")
    if isinstance(delivery, Notice):
        return notice(delivery.text)
    entries = [line(f"[{timestamp(e.time)}] {describe(e)}") for e in delivery.entries]
    return b"".join(entries) + line(END_OF_HISTORY)


class Renderer:
    """
    L{render} with a memory of the last delivery: a room's broadcast hands
    the same event to every member in turn, so it is formatted once, and
    every member gets the same bytes object (which L{WriteBatch} shares).
    """

    __slots__ = ("last", "lastBytes")

    def __init__(self) -> None:
        self.last: Delivery | None = None
        """The delivery rendered last."""
        self.lastBytes = b""
        """Its bytes."""

    def __call__(self, delivery: Delivery) -> bytes:
        """The bytes for C{delivery}, formatted at most once in a row."""
        if delivery is not self.last:
            self.lastBytes = render(delivery)
            self.last = delivery
        return self.lastBytes


def paginate(
    title: str, items: list[str], page: int, maxBytes: int, command: str
) -> tuple[str, int]:
    """
    One page of a listing, as the text of one notice of at most C{maxBytes}
    bytes: C{title: a, b, c}, or C{title (page 2 of 5): ...} with a hint
    naming C{command} when it does not fit on one.  Returns the text and the number of pages.
    Pages are packed greedily, so every item is on exactly one page.
    """
    pages: list[list[str]] = [[]]
    # Room for the longest possible header and the hint to the next page.
    budget = maxBytes - len(title.encode()) - 60
    used = 0
    for item in items:
        size = len(item.encode()) + 2
        if pages[-1] and used + size > budget:
            pages.append([])
            used = 0
        pages[-1].append(item)
        used += size
    count = len(pages)
    if count == 1:
        return f"{title}: {', '.join(pages[0])}", 1
    page = min(max(page, 1), count)
    text = f"{title} (page {page} of {count}): {', '.join(pages[page - 1])}"
    if page < count:
        text += f" (more: {command} {page + 1})"
    return text, count
