"""
The chat's slash commands: one function per command, in one table.

Each takes the connection that sent it and the rest of the line (already
sanitised), and either replies, calls the hub, or raises L{ChatError} with
the message the user sees.  Adding a command is a function and a table
entry (and a line of L{HELP}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tcplab.chat import names, wire
from tcplab.chat.hub import ChatError

if TYPE_CHECKING:
    from tcplab.chat.protocol import ChatProtocol

MAX_REPLY = 512
"""Longest reply line the server builds (C{/who}, C{/rooms} pages), in bytes."""

HELP = [
    "commands:",
    "  /nick NAME [PASSWORD]  change your nickname (" + names.NICK_RULES + ")",
    "  /who [PAGE]            who is in this room",
    "  /msg NICK TEXT         private message",
    "  /me ACTION             say what you do",
    "  /join ROOM [nohistory] move to ROOM (created if new)",
    "  /rooms [PAGE]          list rooms",
    "  /nohistory             (first line only) skip the history replay",
    "  /quit [REASON]         leave (the line 'exit' does too)",
    "  //TEXT                 send a line that starts with '/'",
]

MESSAGES = "tcplab_chat_messages_total"
"""The metric of messages relayed, by kind."""


def pageNumber(rest: str, usage: str) -> int:
    """The page asked for by C{/who 2} or C{/rooms 2} (1 when none)."""
    if not rest:
        return 1
    if not rest.isdigit() or not rest.isascii():
        raise ChatError(f"usage: {usage}")
    return int(rest)


def nick(client: ChatProtocol, rest: str) -> None:
    """C{/nick NAME [PASSWORD]}."""
    newNick, _, password = rest.partition(" ")
    client.changeNick(newNick, password.strip())


def who(client: ChatProtocol, rest: str) -> None:
    """C{/who [PAGE]}: who is in our room, a page at a time."""
    hub = client.factory.hub
    room = hub.roomOf(client)
    if room is None:
        raise ChatError("you are not in a room: /join ROOM")
    page = pageNumber(rest, "/who [PAGE]")
    text, _ = wire.paginate(f"in {room}", hub.usersIn(room), page, MAX_REPLY, "/who")
    client.reply(wire.notice(text))


def msg(client: ChatProtocol, rest: str) -> None:
    """C{/msg NICK TEXT}: a private message."""
    target, _, message = rest.partition(" ")
    if not target or not message.strip():
        raise ChatError("usage: /msg NICK TEXT")
    client.factory.hub.whisper(client, target, message.strip())
    client.factory.metrics.increment(MESSAGES, kind="private")


def me(client: ChatProtocol, rest: str) -> None:
    """C{/me ACTION}."""
    if not rest:
        raise ChatError("usage: /me ACTION")
    client.factory.hub.act(client, rest)
    client.factory.metrics.increment(MESSAGES, kind="action")


def join(client: ChatProtocol, rest: str) -> None:
    """C{/join ROOM [nohistory]}."""
    room, _, option = rest.partition(" ")
    if not room:
        raise ChatError("usage: /join ROOM [nohistory]")
    client.factory.hub.join(client, room, withHistory=option.strip().lower() != "nohistory")


def rooms(client: ChatProtocol, rest: str) -> None:
    """C{/rooms [PAGE]}: every room with its size, a page at a time."""
    listing = [f"{room} ({n})" for room, n in client.factory.hub.rooms().items()]
    page = pageNumber(rest, "/rooms [PAGE]")
    client.reply(wire.notice(wire.paginate("rooms", listing, page, MAX_REPLY, "/rooms")[0]))


def showHelp(client: ChatProtocol, rest: str) -> None:
    """C{/help}."""
    client.reply(b"".join(wire.notice(entry) for entry in HELP))


def leave(client: ChatProtocol, rest: str) -> None:
    """C{/quit [REASON]}."""
    client.quit(f"quit: {rest}" if rest else "quit")


def nohistory(client: ChatProtocol, rest: str) -> None:
    """C{/nohistory} after the first line: too late."""
    raise ChatError("/nohistory only works as the first line")


COMMANDS: dict[str, Callable[[ChatProtocol, str], None]] = {
    "nick": nick,
    "who": who,
    "msg": msg,
    "me": me,
    "join": join,
    "rooms": rooms,
    "help": showHelp,
    "quit": leave,
    "nohistory": nohistory,
}
"""Every command, by name."""


def run(client: ChatProtocol, name: str, rest: str) -> None:
    """
    Carry out C{/name rest} for C{client}.

    @raise ChatError: the command is unknown, misused or refused.
    """
    command = COMMANDS.get(name)
    if command is None:
        raise ChatError(f"unknown command /{name}; try /help")
    command(client, rest)
