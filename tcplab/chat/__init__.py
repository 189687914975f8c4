"""
The chat service: a multi-user line chat for ``nc``, ``telnet`` and
``tcplab chat``.

Public names: L{ChatHub} (rooms, nicknames, history: the embeddable state),
L{ChatEvent}, L{ChatError}, L{ChatFactory} and L{ChatProtocol} (the line
protocol of docs/chat.md).
"""

from tcplab.chat.hub import ChatError, ChatEvent, ChatHub
from tcplab.chat.protocol import ChatFactory, ChatProtocol

__all__ = ["ChatError", "ChatEvent", "ChatFactory", "ChatHub", "ChatProtocol"]
