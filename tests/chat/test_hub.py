"""Tests for L{tcplab.chat.hub.ChatHub}, with plain fake members (no sockets)."""

from __future__ import annotations

import pytest

from tcplab.chat.hub import ChatError, ChatEvent, ChatHub, Room


class Member:
    """A hub member that records what it is sent."""

    def __init__(self) -> None:
        self.nick = ""
        self.room: Room | None = None
        self.received: list[str] = []

    def deliver(self, data: bytes) -> None:
        self.received += data.decode().split("\r\n")[:-1]

    def clear(self) -> list[str]:
        seen, self.received = self.received, []
        return seen


def joined(hub: ChatHub, nick: str, room: str = "#lobby") -> Member:
    member = Member()
    hub.connect(member)
    hub.rename(member, nick)
    hub.join(member, room)
    member.clear()
    return member


def test_guest_nicks_unique() -> None:
    """Each new member gets a distinct guest nickname."""
    hub = ChatHub()
    a, b = Member(), Member()
    assert (hub.connect(a), hub.connect(b)) == ("guest1", "guest2")


def test_message_goes_to_others_in_room_only() -> None:
    """An ordinary line reaches everyone else in the room, not the sender or other rooms."""
    hub = ChatHub()
    alice, bob, carol = joined(hub, "alice"), joined(hub, "bob"), joined(hub, "carol", "#dev")
    alice.clear()
    hub.say(alice, "hi")
    assert bob.received == ["<alice> hi"]
    assert alice.received == [] and carol.received == []


def test_history_replay_with_times_and_marker() -> None:
    """A newcomer sees the room's last N messages with times, then the end marker."""
    times = iter(range(1000))
    hub = ChatHub(historySize=2, clock=lambda: 3600.0 * 0 + next(times))
    alice = joined(hub, "alice")
    for text in ["one", "two", "three"]:
        hub.say(alice, text)
    newcomer = Member()
    hub.connect(newcomer)
    hub.join(newcomer, "#lobby")
    history = newcomer.clear()
    assert [line.split("] ", 1)[1] for line in history[:2]] == ["<alice> two", "<alice> three"]
    assert all(line.startswith("[") and line[9] == "]" for line in history[:2])
    assert history[2] == "*** end of history"


def test_history_can_be_skipped_or_disabled() -> None:
    """withHistory=False skips the replay; historySize=0 sends no history at all."""
    hub = ChatHub()
    alice = joined(hub, "alice")
    hub.say(alice, "old news")
    bot = Member()
    hub.connect(bot)
    hub.join(bot, "#lobby", withHistory=False)
    assert bot.received == []
    quiet = ChatHub(historySize=0)
    member = Member()
    quiet.connect(member)
    quiet.join(member, "#lobby")
    assert member.received == []


def test_nick_unique_ignoring_case_and_old_kept() -> None:
    """A taken (in any case) or invalid nickname is refused and the old one stays."""
    hub = ChatHub()
    alice, other = joined(hub, "alice"), joined(hub, "bob")
    with pytest.raises(ChatError, match="taken"):
        hub.rename(other, "ALICE")
    with pytest.raises(ChatError, match="invalid nickname"):
        hub.rename(other, "no spaces")
    assert other.nick == "bob"
    hub.rename(alice, "Alice2")
    assert other.received[-1] == "*** alice is now known as Alice2"
    assert "alice2" in hub.nicks and "alice" not in hub.nicks


def test_private_message() -> None:
    """/msg reaches only its target, and the sender gets a copy; unknown nicks are errors."""
    hub = ChatHub()
    alice, bob, carol = joined(hub, "alice"), joined(hub, "bob"), joined(hub, "carol")
    alice.clear()
    bob.clear()
    hub.whisper(alice, "BOB", "psst")
    assert bob.received == ["[private] <alice> psst"]
    assert alice.received == ["[private to bob] psst"]
    assert carol.received == []
    with pytest.raises(ChatError, match="no such nickname"):
        hub.whisper(alice, "nobody", "x")


def test_rooms_join_leave_and_listing() -> None:
    """Joining another room announces the move in both; rooms and users are listed."""
    hub = ChatHub()
    alice, bob = joined(hub, "alice"), joined(hub, "bob")
    alice.clear()
    hub.join(bob, "Dev")
    assert alice.received == ["*** bob left #lobby (joined #dev)"]
    assert hub.usersIn("#lobby") == ["alice"] and hub.usersIn("dev") == ["bob"]
    assert hub.rooms() == {"#dev": 1, "#lobby": 1}
    with pytest.raises(ChatError, match="already in #dev"):
        hub.join(bob, "#dev")
    with pytest.raises(ChatError, match="invalid room"):
        hub.join(bob, "bad room")


def test_disconnect_announced_and_forgotten() -> None:
    """A vanished member is announced as gone and its nickname freed."""
    hub = ChatHub()
    alice, bob = joined(hub, "alice"), joined(hub, "bob")
    alice.clear()
    hub.disconnect(bob, "connection lost")
    assert alice.received == ["*** bob left #lobby (connection lost)"]
    assert "bob" not in hub.nicks and hub.usersIn("#lobby") == ["alice"]


def test_big_rooms_hear_no_joins_or_leaves() -> None:
    """Past announceLimit members, arrivals and departures go unannounced; messages do not."""
    hub = ChatHub(announceLimit=2)
    events: list[str] = []
    hub.observe(lambda event: events.append(event.kind))
    alice = joined(hub, "alice")
    bob = joined(hub, "bob")
    assert alice.clear() == ["*** bob joined #lobby"]
    carol = joined(hub, "carol")
    assert alice.received == [] and bob.received == []
    hub.disconnect(carol, "quit")
    assert alice.received == [] and bob.received == []
    hub.disconnect(bob, "quit")
    assert alice.received == ["*** bob left #lobby (quit)"]
    assert events.count("join") == 3 and events.count("leave") == 2
    unlimited = ChatHub(announceLimit=0)
    first = joined(unlimited, "first")
    for n in range(5):
        joined(unlimited, f"n{n}")
    assert len(first.received) == 5


def test_embedding_api_announce_post_observe() -> None:
    """Programs announce, post as a nick, and observe events; post is kept in history."""
    hub = ChatHub(clock=lambda: 100.0)
    alice = joined(hub, "alice")
    events: list[ChatEvent] = []
    stop = hub.observe(events.append)
    hub.announce("#lobby", "maintenance at 5 \x1b[31m")
    hub.post("lobby", "weatherbot", "sunny")
    hub.say(alice, "nice")
    stop()
    hub.say(alice, "unobserved")
    assert alice.received[:2] == ["*** maintenance at 5", "<weatherbot> sunny"]
    assert [(e.kind, e.room, e.nick, e.text) for e in events] == [
        ("announcement", "#lobby", None, "maintenance at 5"),
        ("message", "#lobby", "weatherbot", "sunny"),
        ("message", "#lobby", "alice", "nice"),
    ]
    with pytest.raises(ChatError):
        hub.post("#lobby", "bad nick", "x")
