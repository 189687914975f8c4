"""Tests for L{tcplab.chat.hub.ChatHub}, with plain fake members (no sockets)."""

from __future__ import annotations

import pytest

from tcplab.chat import wire
from tcplab.chat.events import Delivery
from tcplab.chat.hub import ChatError, ChatEvent, ChatHub


class Member:
    """A hub participant that records what it is handed, and its rendering."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.received: list[str] = []

    def receive(self, delivery: Delivery) -> None:
        """Record a delivery and the lines it renders to."""
        self.deliveries.append(delivery)
        self.received += wire.render(delivery).decode().split("\r\n")[:-1]

    def clear(self) -> list[str]:
        """Return and forget the lines received so far."""
        seen, self.received = self.received, []
        return seen


def joined(hub: ChatHub, nick: str, room: str = "#lobby") -> Member:
    """A member called C{nick} in C{room}, with what it saw cleared."""
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
    assert hub.nickOf(other) == "bob"
    hub.rename(alice, "Alice2")
    assert other.received[-1] == "*** alice is now known as Alice2"
    assert hub.holderOf("ALICE2") is not None and hub.holderOf("alice") is None


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
    assert hub.holderOf("bob") is None and hub.usersIn("#lobby") == ["alice"]


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


def test_unicode_nicks_and_look_alikes() -> None:
    """李雷 is accepted; with alice present, alice with a Cyrillic a and ALICE are refused."""
    hub = ChatHub()
    alice, other = joined(hub, "alice"), joined(hub, "other")
    assert hub.rename(other, "李雷") == "李雷"
    assert hub.usersIn("#lobby") == ["alice", "李雷"]
    with pytest.raises(ChatError, match="invalid nickname"):
        hub.rename(other, "\u0430lice")  # mixed script
    with pytest.raises(ChatError, match="taken"):
        hub.rename(other, "ALICE")
    with pytest.raises(ChatError, match="taken"):
        hub.rename(other, "\uff41lice")  # full-width a: the same after NFKC
    hub.rename(alice, "ace")
    with pytest.raises(ChatError, match="looks too much like ace"):
        hub.rename(other, "\u0430\u0441\u0435")  # all Cyrillic
    with pytest.raises(ChatError, match="taken"):
        hub.rename(other, "ACE")
    assert hub.nickOf(other) == "李雷"


def test_post_and_announce_need_a_whole_valid_nick_and_clean_text() -> None:
    """hub.post refuses 'bot\\n'; posted and announced text and reasons lose line breaks."""
    hub = ChatHub()
    alice = joined(hub, "alice")
    bob = joined(hub, "bob")
    alice.clear()
    with pytest.raises(ChatError, match="invalid nickname"):
        hub.post("#lobby", "bot\n", "hi")
    hub.post("#lobby", "bot", "hi\u2028<alice> forged")
    hub.announce("#lobby", "up\u2029*** fake")
    hub.disconnect(bob, "gone\u0085*** alice is now known as admin")
    assert alice.received == [
        "<bot> hi<alice> forged",
        "*** up*** fake",
        "*** bob left #lobby (gone*** alice is now known as admin)",
    ]


def test_failing_observer_never_reaches_the_sender() -> None:
    """An observer that raises (a full disk) is logged; the message is still relayed."""
    hub = ChatHub()
    alice, bob = joined(hub, "alice"), joined(hub, "bob")

    def broken(event: ChatEvent) -> None:
        raise OSError(28, "No space left on device")

    hub.observe(broken)
    hub.say(alice, "still works")
    assert bob.received[-1] == "<alice> still works"


def test_join_observed_after_the_history_replay() -> None:
    """A bot answering a join is heard once, live, after the newcomer's history replay."""
    hub = ChatHub()

    def greeter(event: ChatEvent) -> None:
        if event.kind == "join":
            hub.post(event.room, "greeter", f"hi {event.nick}")

    hub.observe(greeter)
    newcomer = Member()
    hub.connect(newcomer)
    hub.join(newcomer, "#lobby")
    assert newcomer.received == ["*** end of history", "<greeter> hi guest1"]


def test_room_count_bounded() -> None:
    """Past maxRooms a new room is refused with a clear error; existing rooms still work."""
    hub = ChatHub(maxRooms=3)
    alice = joined(hub, "alice")
    hub.join(alice, "#one")
    hub.say(alice, "keep me")
    hub.join(alice, "#two")
    with pytest.raises(ChatError, match=r"too many rooms \(at most 3\)"):
        hub.join(alice, "#three")
    with pytest.raises(ChatError, match="too many rooms"):
        hub.post("#four", "bot", "x")
    hub.join(alice, "#one")
    assert set(hub.rooms()) == {"#lobby", "#one"}, "#two, empty and without history, is gone"


def test_empty_room_history_freed_after_expiry() -> None:
    """An empty room keeps its history for roomExpiry seconds, then is freed."""
    now = [1000.0]
    hub = ChatHub(clock=lambda: now[0], roomExpiry=600, maxRooms=3)
    alice = joined(hub, "alice", "#tmp")
    hub.say(alice, "remember this")
    hub.join(alice, "#lobby")
    now[0] += 599
    assert "#tmp" in hub.rooms()
    now[0] += 2
    assert "#tmp" not in hub.rooms()
    bob = Member()
    hub.connect(bob)
    hub.join(bob, "#tmp")
    assert bob.received == ["*** end of history"], "the old history is gone"


def test_expired_rooms_make_way_for_new_ones() -> None:
    """A full room table frees expired empty rooms before refusing a new one."""
    now = [0.0]
    hub = ChatHub(clock=lambda: now[0], roomExpiry=10, maxRooms=2)
    alice = joined(hub, "alice", "#old")
    hub.say(alice, "x")
    hub.join(alice, "#lobby")
    with pytest.raises(ChatError, match="too many rooms"):
        hub.join(alice, "#new")
    now[0] += 11
    hub.join(alice, "#new")
    assert set(hub.rooms()) == {"#lobby", "#new"}


def test_guest_look_alikes_refused_without_a_stored_skeleton() -> None:
    """A guest's skeleton is not stored, yet its look-alikes are refused until it renames."""
    hub = ChatHub()
    guests = [Member() for _ in range(10)]
    for guest in guests:
        hub.connect(guest)
    assert hub._skeletons == {}
    other = Member()
    hub.connect(other)
    with pytest.raises(ChatError, match="looks too much like guest10"):
        hub.rename(other, "GUESTlO")
    with pytest.raises(ChatError, match="Guest1 is taken"):
        hub.rename(other, "Guest1")
    assert hub.holderOf("guestl") is hub.holderOf("guest1") is not None
    hub.rename(guests[0], "alice")
    assert hub.holderOf("guestl") is None
    assert hub.rename(other, "guestl") == "guestl"
    hub.disconnect(guests[9], "quit")
    assert hub.holderOf("guestlo") is None


def test_cluster_guest_prefix_look_alikes_refused() -> None:
    """Guests of a hub with its own prefix (a cluster node's) are protected the same way."""
    hub = ChatHub()
    hub.guestPrefix = "guestab1-"
    guest, other = Member(), Member()
    assert hub.connect(guest) == "guestab1-1"
    hub.connect(other)
    with pytest.raises(ChatError, match="looks too much like guestab1-1"):
        hub.rename(other, "guestabl-l")
