"""
The chat service: a multi-user line chat for ``nc``, ``telnet`` and
``tcplab chat``.

Laid out as every tcplab service: L{tcplab.chat.wire} (the line format:
sanitising, parsing, rendering), L{tcplab.chat.names} (nickname rules and
look-alikes), L{tcplab.chat.events} (what the hub emits), L{tcplab.chat.hub}
(rooms, nicknames, history: the embeddable state), L{tcplab.chat.flood},
L{tcplab.chat.chatlog}, and L{tcplab.chat.protocol} (the thin Twisted
adapter).  Public names: L{ChatHub}, L{ChatEvent}, L{ChatError},
L{ChatFactory} and L{ChatProtocol}.
"""

from tcplab.chat.events import ChatEvent
from tcplab.chat.hub import ChatError, ChatHub
from tcplab.chat.protocol import ChatFactory, ChatProtocol

__all__ = ["ChatError", "ChatEvent", "ChatFactory", "ChatHub", "ChatProtocol"]
