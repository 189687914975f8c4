"""Tests for L{tcplab.chat.protocol} over the in-memory pair of tests/memory.py and its clock."""

from __future__ import annotations

from twisted.cred import strcred

from tcplab.auth import Authenticator
from tests.chat.memorychat import Chat


def test_welcome_then_join_with_history_after_delay() -> None:
    """A client is greeted with its guest nick and joins the lobby after the join delay."""
    chat = Chat()
    client = chat.connect()
    assert client.lines() == ["*** Welcome to tcplab chat, guest1. Type /help for commands."]
    chat.advance(0.3)
    assert client.lines() == ["*** end of history"]
    assert chat.hub.usersIn("#lobby") == ["guest1"]


def test_nohistory_first_line_skips_replay() -> None:
    """A bot's first line /nohistory joins without the replay."""
    chat = Chat()
    (talker,) = chat.joined("alice")
    talker.send("remember me")
    bot = chat.connect()
    bot.lines()
    bot.send("/nohistory")
    chat.advance(1)
    assert bot.lines() == []
    assert chat.hub.usersIn("#lobby") == ["alice", "guest2"]


def test_first_line_nick_joins_under_that_nick() -> None:
    """A first-line /nick is applied before the join: the room hears the chosen nick."""
    chat = Chat()
    (alice,) = chat.joined("alice")
    bob = chat.connect()
    bob.send("/nick bob")
    assert alice.lines() == ["*** bob joined #lobby"]
    assert bob.lines()[1:] == ["*** guest2 is now known as bob", "*** end of history"]


def test_long_line_refused_connection_kept() -> None:
    """An over-long line gets an error, is not relayed, and the connection stays."""
    chat = Chat(maxLine=20)
    alice, bob = chat.joined("alice", "bob")
    alice.send("x" * 100, "short")
    assert alice.lines() == ["*** error: line too long (100 bytes, at most 20); not sent"]
    assert bob.lines() == ["<alice> short"]
    assert not alice.closed


def test_flood_warned_then_disconnected() -> None:
    """Past the burst a client is told to wait; flooding on gets it disconnected."""
    chat = Chat(floodRate=1, floodBurst=10)
    flooder, other = chat.joined("flooder", "other")
    chat.advance(20)  # the /nick line's token comes back
    flooder.send(*[f"line {n}" for n in range(12)])
    assert len(other.lines()) == 10, "a burst of 10 goes through"
    assert flooder.lines() == ["*** error: slow down: wait 1.0s (that line was not sent)"]
    assert not flooder.closed
    flooder.send(*[f"more {n}" for n in range(40)])
    assert flooder.closed
    assert "*** error: disconnected for flooding" in flooder.lines()
    assert other.lines() == ["*** flooder left #lobby (flooding)"]


def test_blank_and_invisible_lines_count_against_flood_control() -> None:
    """Empty lines, lines that clean to nothing and over-long lines spend tokens too."""
    for filler in [b"", b"\x01", "\u200b".encode(), b"/who", b"y" * 600]:
        chat = Chat(floodRate=1, floodBurst=5)
        flooder, other = chat.joined("flooder", "other")
        flooder.send(*[filler] * 40)
        assert flooder.closed, filler
        assert other.lines()[-1] == "*** flooder left #lobby (flooding)"


def test_flood_control_off_with_zero_rate() -> None:
    """--flood-rate 0 disables flood control."""
    chat = Chat(floodRate=0)
    a, b = chat.joined("a", "b")
    a.send(*[f"n{i}" for i in range(100)])
    assert len(b.lines()) == 100


def authenticatedChat() -> Chat:
    """A chat with the account alice (password s3cret)."""
    chat = Chat()
    chat.factory.authenticator = Authenticator(
        [strcred.makeChecker("memory:alice:s3cret")], chat.clock
    )
    return chat


def test_bom_before_a_command_is_still_a_command() -> None:
    """'\\ufeff/nick alice PASSWORD' logs in; the password reaches neither the room nor a log."""
    chat = authenticatedChat()
    watcher, user = chat.joined("watcher", "user")
    heard: list[str] = []
    chat.hub.observe(lambda event: heard.append(event.text))
    for invisible in ["\ufeff", "\u200b\u2060", "\u202e", "\x00"]:
        user.send(f"{invisible}/nick alice s3cret")
    chat.advance(1)
    assert all("s3cret" not in line for line in watcher.lines())
    assert all("s3cret" not in text for text in heard)
    assert chat.hub.nickOf(user.protocol) == "alice"


def test_registered_nick_needs_password() -> None:
    """With --auth, a nickname that is an account needs its password."""
    chat = authenticatedChat()
    mallory, alice = chat.joined("mallory", "alice2")
    mallory.send("/nick alice")
    assert mallory.lines() == ["*** error: alice is a registered nickname: /nick alice PASSWORD"]
    mallory.send("/nick alice guess")
    chat.advance(1)
    assert mallory.lines() == ["*** error: wrong password for alice"]
    alice.send("/nick alice s3cret")
    chat.advance(0)
    assert chat.hub.nickOf(alice.protocol) == "alice"
    assert chat.hub.nickOf(mallory.protocol) == "mallory"


def test_every_form_of_an_account_name_needs_its_password() -> None:
    """ALICE, full-width alice and look-alikes such as a1ice need alice's password."""
    chat = authenticatedChat()
    (mallory,) = chat.joined("mallory")
    for variant in ["ALICE", "Alice", "\uff41lice", "a1ice", "AL1CE"]:
        mallory.send(f"/nick {variant}")
        assert mallory.lines() == [
            f"*** error: {variant} is a registered nickname: /nick {variant} PASSWORD"
        ], variant
    assert chat.hub.nickOf(mallory.protocol) == "mallory"
    alice = chat.connect()
    alice.send("/nick alice s3cret")
    chat.advance(1)
    assert chat.hub.nickOf(alice.protocol) == "alice"
    assert "*** error" not in " ".join(alice.lines())


def test_first_line_login_joins_after_the_check() -> None:
    """A first-line /nick with a password joins once the login is answered, under that nick."""
    chat = authenticatedChat()
    (watcher,) = chat.joined("watcher")
    alice = chat.connect()
    alice.send("/nick alice s3cret")
    chat.advance(1)
    assert watcher.lines() == ["*** alice joined #lobby"]


def test_slow_consumer_cut_past_bound() -> None:
    """A client whose transport paused us is cut once its queued output passes the bound."""
    chat = Chat(maxPending=1000, floodRate=0)
    talker, sleeper = chat.joined("talker", "sleeper")
    sleeper.protocol.pauseProducing()  # what the transport does when its buffer is full
    for n in range(30):
        talker.send(f"message number {n} " + "x" * 20)
    assert sleeper.closed, "aborted, not left to grow"
    assert not talker.closed
    assert chat.hub.usersIn("#lobby") == ["talker"]


def test_slow_consumer_recovers_when_resumed() -> None:
    """A client that catches up is not cut: the count of queued bytes restarts when it resumes."""
    chat = Chat(maxPending=1000, floodRate=0)
    talker, reader = chat.joined("talker", "reader")
    line = "x" * 90  # about 100 bytes relayed per line: 8 lines stay under the bound
    for _ in range(5):
        reader.protocol.pauseProducing()
        for _ in range(8):
            talker.send(line)  # each line sent in its own reactor iteration
        assert reader.protocol.pending > 700
        reader.protocol.resumeProducing()
    assert not reader.closed
    assert reader.lines().count(f"<talker> {line}") == 40


def test_exit_and_quit() -> None:
    """The bare line 'exit' and /quit both say bye and close, announcing the reason."""
    chat = Chat()
    a, b, c = chat.joined("a", "b", "c")
    a.send("exit")
    b.send("/quit gone fishing")
    assert a.closed and b.closed
    assert c.lines() == ["*** a left #lobby (exit)", "*** b left #lobby (quit: gone fishing)"]


def test_quit_reason_cannot_forge_a_notice() -> None:
    """A quit reason holding U+2028 reaches the room as one line."""
    chat = Chat()
    mallory, victim = chat.joined("mallory", "victim")
    mallory.send("/quit )\u2028*** alice is now known as admin")
    assert victim.lines() == ["*** mallory left #lobby (quit: )*** alice is now known as admin)"]


def test_unknown_command_and_usage_errors() -> None:
    """Unknown commands and malformed ones get one-line errors."""
    chat = Chat()
    (a,) = chat.joined("a")
    a.send("/frobnicate", "/msg bob", "/me", "/join", "/rooms x", "/who -1")
    assert a.lines() == [
        "*** error: unknown command /frobnicate; try /help",
        "*** error: usage: /msg NICK TEXT",
        "*** error: usage: /me ACTION",
        "*** error: usage: /join ROOM [nohistory]",
        "*** error: usage: /rooms [PAGE]",
        "*** error: usage: /who [PAGE]",
    ]


def test_help_lists_commands() -> None:
    """/help lists every command as notices."""
    chat = Chat()
    (a,) = chat.joined("a")
    a.send("/help")
    text = "\n".join(a.lines())
    for command in ["/nick", "/who", "/msg", "/me", "/join", "/rooms", "/quit"]:
        assert command in text


def test_rooms_and_who_are_paged_within_the_line_limit() -> None:
    """/rooms and /who past 512 bytes come in pages, each line short, every entry listed."""
    chat = Chat(floodRate=0)
    users = chat.joined(*[f"user{n:03d}" for n in range(80)])
    for n, user in enumerate(users[:60]):
        user.send(f"/join room{n:03d}", "stay")
    asker = users[-1]
    asker.lines()
    asker.send("/rooms")
    (first,) = asker.lines()
    assert first.startswith("*** rooms (page 1 of ") and first.endswith("(more: /rooms 2)")
    pages = int(first.split(" of ")[1].split(")")[0])
    listed = []
    for page in range(1, pages + 1):
        asker.send(f"/rooms {page}")
        (line,) = asker.lines()
        assert len(line.encode()) + 2 <= 512
        listed += line.split("): ", 1)[1].split(" (more")[0].split(", ")
    assert len(listed) == 61 and "#room059 (1)" in listed
    asker.send("/who")
    (who,) = asker.lines()
    assert who == "*** in #lobby: " + ", ".join(f"user{n:03d}" for n in range(60, 80))
