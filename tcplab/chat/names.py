"""
Nicknames: which are valid, which are the same, and which look the same.

Pure functions, no I/O.  A nickname may use the letters and digits of any
script, so that 李雷, Ünal and Алиса are welcome, but it must not be able to
pass for someone else's:

  - L{normalizeNick} checks the rules and returns the nickname as it will be
    shown: NFKC-normalised (full-width and styled letters become plain ones).
  - L{nickKey} is what uniqueness is decided on: NFKC and case folding, so
    C{Alice}, C{ALICE} and C{ａｌｉｃｅ} are one nickname.
  - L{skeleton} is what look-alikes are caught with: NFKD, case folding and
    a compact table of the common Latin/Cyrillic/Greek/digit confusables
    (after Unicode TS #39's skeleton), so C{аlice} with a Cyrillic C{а} or
    C{a1ice} cannot be taken while C{alice} is present.
  - One script per nickname (plus ASCII digits and C{_ . -}): mixing Latin
    with Cyrillic or Greek, the classic look-alike trick, is refused.  As in
    TS #39, Han goes with Hiragana and Katakana (Japanese), with Hangul
    (Korean) and with Bopomofo (Chinese).

Python's standard library has no Script property; a character's script is
read from the first word of its Unicode name (C{LATIN SMALL LETTER A},
C{CYRILLIC SMALL LETTER A}, C{CJK UNIFIED IDEOGRAPH-674E}), which is exact
for the letters and digits allowed here.
"""

# The confusables table and these docs hold look-alike letters on purpose.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import unicodedata

MAX_NICK_LENGTH = 16
"""The longest nickname, in characters (after normalisation)."""

NICK_RULES = (
    f"1 to {MAX_NICK_LENGTH} letters or digits of one script, '_', '.' or '-', "
    "not starting with '-' or '.'"
)

_PUNCTUATION = frozenset("_.-")
"""The ASCII punctuation a nickname may hold (script-neutral)."""

_SCRIPT_ALIASES = {
    "CJK": "HAN",
    "ARABIC-INDIC": "ARABIC",
    "EXTENDED": "ARABIC",  # EXTENDED ARABIC-INDIC DIGIT ...
    "KANGXI": "HAN",
    "IDEOGRAPHIC": "HAN",  # IDEOGRAPHIC ITERATION MARK, as in 佐々木
}
"""Name prefixes that are not the script's own name."""

_AUGMENTED = {
    "HAN": frozenset({"HAN", "JAPANESE", "KOREAN", "CHINESE"}),
    "HIRAGANA": frozenset({"JAPANESE"}),
    "KATAKANA": frozenset({"JAPANESE"}),
    "KATAKANA-HIRAGANA": frozenset({"JAPANESE"}),  # the prolonged sound mark, as in ラーメン
    "HANGUL": frozenset({"KOREAN"}),
    "BOPOMOFO": frozenset({"CHINESE"}),
}
"""TS #39's augmented script sets: the scripts a script may be written with."""

# The skeleton's confusables: each maps to the Latin (or digit) character it
# passes for.  Upper-case forms are mapped before case folding, because an
# upper-case letter often looks like a different Latin letter than its
# lower-case one does (Greek Eta is H, eta is n).
_CONFUSABLE_UPPER = {
    # Cyrillic
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ѕ": "S", "І": "l", "Ј": "J", "Ԛ": "Q",
    "Ԝ": "W", "Ӏ": "l", "Ү": "Y", "Ғ": "F",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "l", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip
_CONFUSABLE = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "з": "3", "і": "l", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x",
    "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ь": "b", "ү": "y",
    "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "l", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "μ": "u", "ϲ": "c",
    # Digits and Latin: in a case-insensitive namespace i is I, and I is l.
    "0": "o", "1": "l", "|": "l", "ı": "l", "i": "l",
}  # fmt: skip
_CONFUSABLE_SEQUENCES = (("rn", "m"), ("vv", "w"))
"""Letter pairs that read as one letter in most fonts."""


def scriptOf(char: str) -> str | None:
    """
    The script of a letter, digit or mark, from its Unicode name: C{LATIN},
    C{CYRILLIC}, C{HAN} ...; C{COMMON} for ASCII digits and C{_ . -},
    C{INHERITED} for combining marks; L{None} for anything else.
    """
    if char in _PUNCTUATION or "0" <= char <= "9":
        return "COMMON"
    category = unicodedata.category(char)
    if category[0] not in "LMN" or category in ("Nl", "No"):
        return None
    name = unicodedata.name(char, "")
    if not name:
        return None
    first = name.split(" ", 1)[0]
    if category[0] == "M" and first == "COMBINING":
        return "INHERITED"
    return _SCRIPT_ALIASES.get(first, first)


def _isSingleScript(scripts: list[str]) -> bool:
    """Whether the scripts of a nickname's characters can all be one writing system."""
    common: frozenset[str] | None = None
    for script in scripts:
        if script in ("COMMON", "INHERITED"):
            continue
        allowed = _AUGMENTED.get(script, frozenset({script}))
        common = allowed if common is None else common & allowed
        if not common:
            return False
    return True


def normalizeNick(nick: str) -> str | None:
    """
    C{nick} as it will be shown (NFKC), if it follows L{NICK_RULES}; else
    L{None}.  The whole string must match: a trailing newline or any other
    invisible character makes it invalid.
    """
    shown = unicodedata.normalize("NFKC", nick)
    if not 0 < len(shown) <= MAX_NICK_LENGTH or shown[0] in "-.":
        return None
    scripts: list[str] = []
    for index, char in enumerate(shown):
        script = scriptOf(char)
        if script is None:
            return None
        if script == "INHERITED" and (index == 0 or shown[index - 1] in _PUNCTUATION):
            return None  # a mark needs a letter to sit on
        scripts.append(script)
    if not _isSingleScript(scripts):
        return None
    return shown


def isValidNick(nick: str) -> bool:
    """Whether C{nick} follows L{NICK_RULES}."""
    return normalizeNick(nick) is not None


def nickKey(nick: str) -> str:
    """The form two nicknames are compared in: NFKC, case-folded, NFKC again."""
    folded = unicodedata.normalize("NFKC", nick).casefold()
    return unicodedata.normalize("NFKC", folded)


def skeleton(nick: str) -> str:
    """
    What C{nick} looks like: two nicknames with the same skeleton are
    look-alikes, and the second one is refused.
    """
    chars = unicodedata.normalize("NFKD", nick)
    chars = "".join(_CONFUSABLE_UPPER.get(c, c) for c in chars).casefold()
    chars = "".join(_CONFUSABLE.get(c, c) for c in chars)
    for pair, single in _CONFUSABLE_SEQUENCES:
        chars = chars.replace(pair, single)
    return unicodedata.normalize("NFKD", chars)


class GuestSkeletons:
    """
    The skeletons of guest nicknames (a prefix and a decimal number), worked
    out instead of stored.

    Every connection starts as a guest, and most stay one: keeping each
    guest's skeleton (a string and a table entry) would cost every idle
    connection about 80 bytes.  A guest's skeleton is the prefix's skeleton
    followed by each digit's, whenever L{derived} says so (the hub checks
    each guest against L{skeleton} itself), and L{nickFor} turns such a
    skeleton back into the one guest nickname it can belong to.
    """

    __slots__ = ("_fromDigits", "_prefixSkeleton", "_toDigits", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._prefixSkeleton = skeleton(prefix)
        digits = {digit: skeleton(digit) for digit in "0123456789"}
        self._toDigits: dict[str, str] = {}
        """Each digit's skeleton, a single character, back to the digit (empty: not usable)."""
        if all(len(shape) == 1 for shape in digits.values()) and len(set(digits.values())) == 10:
            self._toDigits = {shape: digit for digit, shape in digits.items()}
        self._fromDigits = str.maketrans(digits) if self._toDigits else {}

    def derived(self, nick: str) -> str | None:
        """
        The skeleton of guest nickname C{nick} as this works it out, or
        L{None} when it cannot (then the real skeleton must be stored).
        """
        if not self._toDigits or not nick.startswith(self.prefix):
            return None
        return self._prefixSkeleton + nick[len(self.prefix) :].translate(self._fromDigits)

    def nickFor(self, shape: str) -> str | None:
        """The guest nickname whose L{derived} skeleton is C{shape}, if there can be one."""
        if not self._toDigits or not shape.startswith(self._prefixSkeleton):
            return None
        rest = shape[len(self._prefixSkeleton) :]
        toDigits = self._toDigits
        if not rest or any(char not in toDigits for char in rest):
            return None
        number = "".join(toDigits[char] for char in rest)
        return None if number[0] == "0" else self.prefix + number
