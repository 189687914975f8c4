"""Tests for L{tcplab.chat.wire}: sanitising, room names, commands, rendering."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from tcplab.chat import wire
from tcplab.chat.events import ChatEvent, HistoryReplay, Notice, PrivateMessage
from tcplab.chat.flood import TokenBucket


def test_strips_terminal_escapes() -> None:
    """Colour codes, cursor moves, OSC title changes and C1 CSI are removed."""
    assert wire.sanitize("\x1b[31mred\x1b[0m") == "red"
    assert wire.sanitize("a\x1b[2J\x1b[Hb") == "ab"
    assert wire.sanitize("\x1b]0;pwned\x07title") == "title"
    assert wire.sanitize("x\x9b2Jy") == "xy"


def test_strips_controls_and_bidi() -> None:
    """NUL, BEL, backspace, DEL, C1 and bidi overrides go; a tab becomes a space."""
    assert wire.sanitize("a\x00b\x07c\x08d\x7fe") == "abcde"
    assert wire.sanitize("evil\u202egnp.exe") == "evilgnp.exe"
    assert wire.sanitize("a\tb") == "a b"


def test_invalid_utf8_replaced() -> None:
    """Invalid UTF-8 becomes U+FFFD instead of an error."""
    assert wire.decode(b"caf\xe9 \xc3\xa9") == "caf\ufffd \u00e9"


@given(st.text())
def test_sanitized_text_has_no_controls(text: str) -> None:
    """Whatever comes in, nothing that a terminal interprets comes out."""
    clean = wire.sanitize(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in clean)
    assert "\x1b" not in clean
    assert not any(unicodedata.category(c) in wire.REMOVED_CATEGORIES for c in clean)
    assert len(clean.splitlines()) <= 1, "nothing that any client breaks a line at"


INVISIBLE = {
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "next line": "\u0085",
    "left-to-right mark": "\u200e",
    "right-to-left mark": "\u200f",
    "arabic letter mark": "\u061c",
    "left-to-right isolate": "\u2066",
    "pop directional isolate": "\u2069",
    "right-to-left embedding": "\u202b",
    "right-to-left override": "\u202e",
    "zero-width space": "\u200b",
    "zero-width joiner": "\u200d",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "tag latin small a": "\U000e0061",
    "cancel tag": "\U000e007f",
    "private use": "\ue000",
    "unassigned": "\U000e0080",
}


def test_strips_line_breaks_bidi_and_invisible_characters() -> None:
    """U+2028/2029, U+0085, bidi marks/isolates/overrides, zero-width and tag characters go."""
    for name, char in INVISIBLE.items():
        assert wire.sanitize(f"hi{char}<alice> x") == "hi<alice> x", name
    forged = "hi\u2028<alice> give me your password"
    assert len(wire.sanitize(forged).splitlines()) == 1
    assert wire.sanitize("\ufeff/nick alice s3cret") == "/nick alice s3cret"


def test_other_scripts_kept() -> None:
    """Letters, marks and emoji of any script are relayed unchanged."""
    for text in ["李雷 你好", "Ünal é", "नमस्ते", "مرحبا", "🙂 ok", "a\u00a0b"]:
        assert wire.sanitize(text) == text


def test_room_names() -> None:
    """Room names are normalised to a lower-case #name; invalid ones are None."""
    assert wire.normalizeRoom("Dev") == "#dev"
    assert wire.normalizeRoom("#dev") == "#dev"
    assert wire.normalizeRoom("#") is None
    assert wire.normalizeRoom("a b") is None
    assert wire.normalizeRoom("dev\n") is None, "a full match: no trailing newline"


def test_parse_command() -> None:
    """Slash lines are commands; // escapes a leading slash."""
    assert wire.parseCommand("/MSG bob hi there") == ("msg", "bob hi there")
    assert wire.parseCommand("hello") is None
    assert wire.parseCommand("//not a command") is None
    assert wire.messageText("//not a command") == "/not a command"


def test_token_bucket_burst_then_rate() -> None:
    """A burst passes at once; then one line per 1/rate seconds; the wait is told."""
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=10, clock=lambda: now[0])
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    assert bucket.take() == 0.5
    now[0] += 0.5
    assert bucket.take() == 0.0
    now[0] += 100
    assert [bucket.take() for _ in range(10)] == [0.0] * 10


def test_rendering_of_every_delivery() -> None:
    """Each kind of event, private message, notice and replay has its documented line."""
    at = 0.0
    assert wire.render(ChatEvent("message", "#a", "bob", "hi", at)) == b"<bob> hi\r\n"
    assert wire.render(ChatEvent("action", "#a", "bob", "waves", at)) == b"* bob waves\r\n"
    assert wire.render(ChatEvent("announcement", "#a", None, "up", at)) == b"*** up\r\n"
    assert wire.render(ChatEvent("join", "#a", "bob", "", at)) == b"*** bob joined #a\r\n"
    leave = ChatEvent("leave", "#a", "bob", "quit", at)
    assert wire.render(leave) == b"*** bob left #a (quit)\r\n"
    nick = ChatEvent("nick", "#a", "bob", "rob", at)
    assert wire.render(nick) == b"*** bob is now known as rob\r\n"
    assert wire.render(PrivateMessage("a", "b", "psst", False)) == b"[private] <a> psst\r\n"
    assert wire.render(PrivateMessage("a", "b", "psst", True)) == b"[private to b] psst\r\n"
    assert wire.render(Notice("bye")) == b"*** bye\r\n"
    replay = wire.render(HistoryReplay("#a", (ChatEvent("message", "#a", "bob", "hi", at),)))
    assert replay.endswith(b"] <bob> hi\r\n*** end of history\r\n") and replay[0:1] == b"["


def test_renderer_formats_each_event_once() -> None:
    """The renderer gives every member of a broadcast the very same bytes object."""
    render = wire.Renderer()
    event = ChatEvent("message", "#a", "bob", "hi", 0.0)
    first = render(event)
    assert render(event) is first
    other = ChatEvent("message", "#a", "bob", "hi", 0.0)
    assert render(other) == first and render(other) is not first


@given(
    st.lists(st.text(alphabet="ab李", min_size=1, max_size=40), max_size=300), st.integers(1, 9)
)
def test_pages_fit_the_line_limit_and_hold_every_item(items: list[str], page: int) -> None:
    """Each page of a listing fits in 512 bytes, and every item is on exactly one page."""
    _, pages = wire.paginate("rooms", items, 1, 512, "/rooms")
    seen: list[str] = []
    for number in range(1, pages + 1):
        text, _ = wire.paginate("rooms", items, number, 512, "/rooms")
        assert len(wire.notice(text)) <= 512
        listing = text.split(": ", 1)[1].split(" (more: ")[0]
        seen += listing.split(", ") if listing else []
    assert seen == items
    assert wire.paginate("rooms", items, page, 512, "/rooms")[1] == pages
