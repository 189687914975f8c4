"""Tests for L{tcplab.chat.text}: sanitising, names, commands."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tcplab.chat import text as wire
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


def test_nick_rules() -> None:
    """Nicknames: 1-16 of letters, digits, _ . -, not starting with - or ."""
    assert wire.isValidNick("alice") and wire.isValidNick("a.b-c_9")
    assert wire.isValidNick("x" * 16) and not wire.isValidNick("x" * 17)
    for bad in ["", "-x", ".x", "has space", "é", "a/b", "<b>"]:
        assert not wire.isValidNick(bad), bad


def test_room_names() -> None:
    """Room names are normalised to a lower-case #name; invalid ones are None."""
    assert wire.normalizeRoom("Dev") == "#dev"
    assert wire.normalizeRoom("#dev") == "#dev"
    assert wire.normalizeRoom("#") is None
    assert wire.normalizeRoom("a b") is None


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
