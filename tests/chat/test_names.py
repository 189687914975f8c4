"""Tests for L{tcplab.chat.names}: Unicode nicknames, equivalence and look-alikes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tcplab.chat import names


def test_nick_rules() -> None:
    """1-16 letters/digits of one script, _ . -, not starting with - or ., whole string."""
    assert names.isValidNick("alice") and names.isValidNick("a.b-c_9")
    assert names.isValidNick("x" * 16) and not names.isValidNick("x" * 17)
    for bad in ["", "-x", ".x", "has space", "a/b", "<b>", "bot\n", "bot\u200b", "\u0301e"]:
        assert not names.isValidNick(bad), repr(bad)


def test_letters_and_digits_of_any_script() -> None:
    """Chinese, Cyrillic, accented Latin, Japanese, Korean, Arabic, Devanagari nicks are valid."""
    for nick in [
        "李雷",
        "Алиса",
        "Ünal",
        "山田たろう",
        "ラーメン",
        "佐々木",
        "김철수",
        "محمد٣",
        "नमस्ते",
    ]:
        assert names.normalizeNick(nick) == nick, nick


def test_one_script_per_nick() -> None:
    """Latin mixed with Cyrillic or Greek (or another script's digits) is refused."""
    for nick in ["\u0430lice", "\u0399an", "bob\u03b1", "\u0663\u0664ab", "李alice"]:
        assert names.normalizeNick(nick) is None, nick


def test_length_counts_characters() -> None:
    """The limit is 16 characters, not bytes: sixteen Han characters (48 bytes) fit."""
    assert names.isValidNick("李" * 16)
    assert not names.isValidNick("李" * 17)


def test_nfkc_shown_and_case_folded_key() -> None:
    """Full-width letters are shown plain; case and normalisation do not make a new nick."""
    assert names.normalizeNick("\uff4c\uff49\uff53\uff41") == "lisa"
    assert names.nickKey("ALICE") == names.nickKey("alice") == names.nickKey("\uff41lice")
    assert names.nickKey("Straße") == names.nickKey("STRASSE")


def test_skeleton_catches_look_alikes() -> None:
    """Cyrillic and Greek look-alikes, 1/l/I, 0/o and rn/m share a skeleton; others do not."""
    assert names.skeleton("\u0430\u0441\u0435") == names.skeleton("ace")  # Cyrillic a, s, e
    assert names.skeleton("\u0391\u0392\u0395") == names.skeleton(
        "abe"
    )  # Greek capital alpha, beta, epsilon
    assert names.skeleton("a1ice") == names.skeleton("alice") == names.skeleton("ALICE")
    assert names.skeleton("b0b") == names.skeleton("bob")
    assert names.skeleton("rnary") == names.skeleton("mary")
    assert names.skeleton("bob") != names.skeleton("rob")
    assert names.skeleton("李雷") != names.skeleton("李")


def test_scripts_from_unicode_names() -> None:
    """The script of a character comes from its Unicode name; marks are inherited."""
    assert names.scriptOf("a") == "LATIN" and names.scriptOf("\u0430") == "CYRILLIC"
    assert names.scriptOf("李") == "HAN" and names.scriptOf("\u0301") == "INHERITED"
    assert names.scriptOf("7") == "COMMON" and names.scriptOf(" ") is None


@given(st.integers(1, 10**12), st.sampled_from(["guest", "guestab12-", "guest3f9c-"]))
def test_guest_skeletons_worked_out_and_back(number: int, prefix: str) -> None:
    """A guest's skeleton is worked out as skeleton() gives it, and leads back to the guest."""
    guests = names.GuestSkeletons(prefix)
    nick = f"{prefix}{number}"
    assert guests.derived(nick) == names.skeleton(nick)
    assert guests.nickFor(names.skeleton(nick)) == nick


def test_guest_skeletons_refuse_what_no_guest_looks_like() -> None:
    """Only the skeleton of a prefix and a number without leading zero names a guest."""
    guests = names.GuestSkeletons("guest")
    for shape in ("guest", "guestx", "guesto", "guestol", "gues1", "guestl2x", "guest1"):
        assert guests.nickFor(shape) is None, shape
    assert guests.nickFor("guestlo") == "guest10"
    assert guests.derived("bob1") is None
